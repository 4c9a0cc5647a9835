"""Salesforce REST emulator: ``app.create_app`` serves it; ``client`` is the SDK client."""
