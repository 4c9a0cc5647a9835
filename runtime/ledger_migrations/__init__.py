"""Alembic migrations of the deal ledger (``runtime.ledger``); applied on first use."""
