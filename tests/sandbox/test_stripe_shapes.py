"""Objects carry the fields of Stripe's own fixtures (fixtures3.json), with the same JSON types."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe

from tests.sandbox.conftest import make_stripe_client

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "stripe" / "fixtures3.json"
# Keys whose values are free-form maps, not a fixed shape.
FREE_FORM = {"metadata", "object"}
# Fields api.stripe.com returns that the fixture leaves out (optional in the OpenAPI spec), and
# fields of the emulator's API version (the SDK's) newer than the fixture file: the conformance
# tests check those against the SDK's own model.
ALLOWED_EXTRA = {"price_details", "pause_schedules"}
# Fields the fixture file still shows that the emulator's API version no longer sends: since
# 2025-03-31 an invoice names its subscription under ``parent.subscription_details`` only, and the
# SDK of the emulator's API version has no ``Invoice.subscription``.
DROPPED = {"invoice": {"subscription"}}


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def shape_differences(ours: Any, reference: Any, path: str = "") -> list[str]:
    """Missing or extra keys and type mismatches (null on either side matches anything)."""
    problems: list[str] = []
    missing = reference.keys() - ours.keys()
    extra = ours.keys() - reference.keys() - ALLOWED_EXTRA
    problems += [f"{path}{k}: missing" for k in sorted(missing)]
    problems += [f"{path}{k}: not in fixture" for k in sorted(extra)]
    for key in reference.keys() & ours.keys():
        mine, theirs = ours[key], reference[key]
        if mine is None or theirs is None:
            continue
        if _kind(mine) != _kind(theirs):
            problems.append(f"{path}{key}: {_kind(mine)} instead of {_kind(theirs)}")
        elif isinstance(mine, dict) and key not in FREE_FORM:
            problems += shape_differences(mine, theirs, f"{path}{key}.")
        elif isinstance(mine, list) and mine and theirs and isinstance(theirs[0], dict):
            problems += shape_differences(mine[0], theirs[0], f"{path}{key}[0].")
    return problems


@pytest.fixture(scope="module")
def fixtures() -> dict[str, Any]:
    return json.loads(FIXTURES.read_text(encoding="utf-8"))["resources"]


def _raw(obj: stripe.StripeObject) -> dict[str, Any]:
    # The JSON exactly as the emulator sent it, before the SDK turns it into objects.
    assert obj.last_response is not None
    return json.loads(obj.last_response.body)


@pytest.fixture(scope="module")
def billed_account(stripe_emulator_url: str) -> dict[str, dict[str, Any]]:
    """One of every object, in a state where most optional fields are filled in."""
    httpx.post(f"{stripe_emulator_url}/_sandbox/reset").raise_for_status()
    client = make_stripe_client(stripe_emulator_url)
    customer = client.v1.customers.create(
        params={
            "name": "Acme",
            "email": "ap@acme.example",
            "address": {"line1": "1 Main St", "country": "US"},
            "metadata": {"deal_id": "d1"},
        }
    )
    product = client.v1.products.create(params={"name": "Platform Pro", "description": "Seats"})
    price = client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": 129600,
            "recurring": {"interval": "year"},
            "product": product.id,
            "lookup_key": "pro",
        }
    )
    # "iterations" is the legacy phase length the SDK's TypedDicts no longer list.
    schedule_params: Any = {
        "customer": customer.id,
        "start_date": "now",
        "default_settings": {
            "collection_method": "send_invoice",
            "invoice_settings": {"days_until_due": 30},
        },
        "phases": [
            {
                "items": [{"price": price.id, "quantity": 50}],
                "iterations": 1,
                "invoice_settings": {"days_until_due": 30},
                "add_invoice_items": [
                    {"price_data": {"currency": "usd", "product": product.id, "unit_amount": 5}}
                ],
            }
        ],
    }
    schedule = client.v1.subscription_schedules.create(params=schedule_params)
    subscription = client.v1.subscriptions.retrieve(str(schedule.subscription))
    invoice = client.v1.invoices.finalize_invoice(str(subscription.latest_invoice))
    item_id = subscription["items"].data[0].id
    invoice_item = client.v1.invoice_items.list(params={"customer": customer.id}).data[0]
    return {
        "customer": _raw(client.v1.customers.retrieve(customer.id)),
        "product": _raw(client.v1.products.retrieve(product.id)),
        "price": _raw(client.v1.prices.retrieve(price.id)),
        "subscription": _raw(subscription),
        "subscription_item": _raw(client.v1.subscription_items.retrieve(item_id)),
        "subscription_schedule": _raw(client.v1.subscription_schedules.retrieve(schedule.id)),
        "invoice": _raw(invoice),
        "invoiceitem": _raw(client.v1.invoice_items.retrieve(invoice_item.id)),
        "line_item": _raw(client.v1.invoices.line_items.list(invoice.id)).get("data", [{}])[0],
        "event": _raw(client.v1.events.list()).get("data", [{}])[0],
    }


@pytest.mark.parametrize(
    "resource",
    [
        "customer",
        "product",
        "price",
        "subscription",
        "subscription_item",
        "subscription_schedule",
        "invoice",
        "invoiceitem",
        "line_item",
        "event",
    ],
)
def test_objects_have_the_fields_and_types_of_stripes_fixtures(
    resource: str, billed_account: dict[str, dict[str, Any]], fixtures: dict[str, Any]
) -> None:
    ours = billed_account[resource]

    reference = {
        k: v for k, v in fixtures[resource].items() if k not in DROPPED.get(resource, set())
    }

    assert ours["object"] == reference["object"]
    assert shape_differences(ours, reference) == []


def test_shape_comparison_notices_a_missing_field_and_a_wrong_type(
    fixtures: dict[str, Any],
) -> None:
    broken = dict(fixtures["price"])
    del broken["lookup_key"]
    broken["unit_amount"] = "2000"

    assert shape_differences(broken, fixtures["price"]) == [
        "lookup_key: missing",
        "unit_amount: str instead of number",
    ]
