"""Builders for quotes and catalogs used across the unit tests."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from qtc.catalog import load_catalog
from qtc.models import Catalog

REPO_ROOT = Path(__file__).resolve().parents[2]
SIGNED = datetime(2026, 12, 15, 10, 0, tzinfo=UTC)

_BASE_QUOTE: dict[str, Any] = {
    "quote_id": "Q-1001",
    "opportunity_id": "006000000000001AAA",
    "currency": "usd",
    "account": {
        "legal_name": "Acme Robotics, Inc.",
        "billing_email": "ap@acme.example",
        "address": {
            "line1": "1 Main St",
            "city": "Austin",
            "state": "TX",
            "postal_code": "78701",
            "country": "US",
        },
        "tax_id": {"type": "us_ein", "value": "12-3456789"},
    },
    "signer": {"name": "Jane Doe", "email": "jane@acme.example"},
    "term_months": 36,
    "billing_frequency": "annual",
    "billing_anchor": "start",
    "start": "on_signature",
    "payment_terms_days": 30,
    "uplift_percent": "7",
    "valid_until": "2030-12-31",
    "lines": [{"sku": "PLATFORM-PRO", "quantity": 50, "discount_percent": "10"}],
}


def quote_dict(**overrides: Any) -> dict[str, Any]:
    """The documented quote (36 months, annual, 50 PLATFORM-PRO at 10% off), overridden."""
    quote = copy.deepcopy(_BASE_QUOTE)
    quote.update(copy.deepcopy(overrides))
    return quote


def catalog_from_toml(directory: Path, text: str, name: str = "catalog.toml") -> Catalog:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return load_catalog(path)


def tiny_catalog_toml(
    skus: str, *, currencies: str = '["usd"]', terms: str = "[12, 24, 36]"
) -> str:
    """A catalog with a permissive policy and the given ``[[skus]]`` tables."""
    return f"""
[policy]
currencies = {currencies}
term_months = {terms}
billing_frequencies = ["monthly", "quarterly", "annual"]
payment_terms_days = [0, 30]
default_uplift_percent = "3"
max_uplift_percent = "10"
{skus}
"""
