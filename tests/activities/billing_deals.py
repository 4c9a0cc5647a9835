"""Deals the billing tests bill: priced by the real CPQ engine from a small test catalog."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from qtc.cpq import price_quote
from qtc.models import Catalog, Policy, PricedQuote, Requirement, Sku
from tests.unit.builders import quote_dict

CATALOG = Catalog(
    policy=Policy(
        currencies=["usd", "eur"],
        term_months=[12, 18, 24, 36, 48],
        billing_frequencies=["monthly", "quarterly", "annual"],
        payment_terms_days=[0, 15, 30, 45, 60],
        default_uplift_percent=Decimal("7"),
        max_uplift_percent=Decimal("10"),
    ),
    skus=[
        Sku(
            code="PLATFORM-PRO",
            name="Platform Pro",
            kind="recurring",
            unit="seat",
            prices={"usd": Decimal("120.00"), "eur": Decimal("110.00")},
            min_quantity=5,
            max_quantity=10000,
            max_discount_percent=Decimal("20"),
            hard_max_discount_percent=Decimal("40"),
            requires=[Requirement(sku="IMPL-SERVICES", quantity=1)],
            features={"sso": True, "seats": "quantity"},
        ),
        Sku(
            code="SUPPORT-PREMIUM",
            name="Premium Support",
            kind="recurring",
            prices={"usd": Decimal("499.00"), "eur": Decimal("459.00")},
        ),
        Sku(
            code="IMPL-SERVICES",
            name="Implementation Services",
            kind="one_time",
            prices={"usd": Decimal("5000.00"), "eur": Decimal("4500.00")},
        ),
    ],
)


def quote(**overrides: Any) -> dict[str, Any]:
    """The documented quote with only PLATFORM-PRO (priced in docs/architecture.md)."""
    return quote_dict(**{"valid_until": "2099-01-31", **overrides})


def priced(signed_at: datetime, **overrides: Any) -> PricedQuote:
    return price_quote(quote(**overrides), CATALOG, signed_at)


def design_example(signed_at: datetime | None = None) -> PricedQuote:
    """The documented 36-month annual deal with 7% uplift, signed 2026-12-15."""
    return priced(signed_at or datetime(2026, 12, 15, 15, 30, tzinfo=UTC))


def stub_deal(signed_at: datetime, opportunity_id: str = "006000000000002AAA") -> PricedQuote:
    """A monthly EUR deal anchored on the 1st: a stub from signature to the next 1st."""
    return priced(
        signed_at,
        opportunity_id=opportunity_id,
        currency="eur",
        term_months=12,
        billing_frequency="monthly",
        billing_anchor="first_of_month",
        payment_terms_days=15,
        account={
            "legal_name": "Berliner Roboter GmbH",
            "billing_email": "rechnung@roboter.example",
            "address": {
                "line1": "Friedrichstr. 1",
                "city": "Berlin",
                "postal_code": "10117",
                "country": "DE",
            },
            "tax_id": {"type": "eu_vat", "value": "DE123456789"},
        },
        lines=[
            {"sku": "PLATFORM-PRO", "quantity": 20, "discount_percent": "5"},
            {"sku": "SUPPORT-PREMIUM", "quantity": 1},
        ],
    )


def days_ago(days: int, *, avoid_first: bool = False) -> datetime:
    """A signature time ``days`` before now; ``avoid_first`` steps off the 1st so a stub exists."""
    moment = datetime.now(UTC) - timedelta(days=days)
    if avoid_first and moment.day == 1:
        moment -= timedelta(days=1)
    return moment
