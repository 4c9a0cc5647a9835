"""SMTP sink: accepts every message (or the injected failures) and lists what it received."""
