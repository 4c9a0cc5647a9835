"""A NetSuite REST web services emulator: records, external-id upserts, SuiteQL and TBA."""
