"""Every Chargebee endpoint the emulator serves, driven through the official SDK, answers with
bodies that match the SDK's own model of each resource (generated from Chargebee's API spec): no
property the model does not know, nested lists and objects of the model's types, enum values from
the SDK's enums, and the envelope (``{"customer": ...}``, ``{"list": [...], "next_offset"}``)
Chargebee wraps them in."""

from __future__ import annotations

import re
import time
import typing
from collections.abc import Iterator
from enum import Enum
from typing import Any

import chargebee
import pytest
from chargebee import enums
from chargebee.model import Model
from chargebee.models.customer.responses import CustomerResponse
from chargebee.models.email_log.responses import EmailLogResponse
from chargebee.models.invoice.operations import Invoice
from chargebee.models.invoice.responses import InvoiceResponse
from chargebee.models.item.operations import Item
from chargebee.models.item.responses import ItemResponse
from chargebee.models.item_family.responses import ItemFamilyResponse
from chargebee.models.item_price.operations import ItemPrice
from chargebee.models.item_price.responses import ItemPriceResponse
from chargebee.models.ramp.operations import Ramp
from chargebee.models.ramp.responses import RampResponse
from chargebee.models.subscription.operations import Subscription
from chargebee.models.subscription.responses import SubscriptionResponse

from integrations.chargebee.client import chargebee_client
from sandbox.chargebee.app import API, ENDPOINTS, create_app
from sandbox.chargebee.testing import API_KEY, SITE
from sandbox.stripe.testing import serve_app
from tests.conformance.recording import Exchange, Recorder

RESOURCES: dict[str, type[Model]] = {
    "customer": CustomerResponse,
    "item_family": ItemFamilyResponse,
    "item": ItemResponse,
    "item_price": ItemPriceResponse,
    "subscription": SubscriptionResponse,
    "ramp": RampResponse,
    "invoice": InvoiceResponse,
    "email_log": EmailLogResponse,
}
# Chargebee names each resource's kind in ``object``; the SDK's models leave that field out.
ALWAYS_SENT = frozenset({"object"})
# (resource, field) -> the SDK's enum of the values Chargebee documents for it.
ENUMS: dict[tuple[str, str], type[Enum]] = {
    ("customer", "auto_collection"): enums.AutoCollection,
    ("customer", "taxability"): enums.Taxability,
    ("item", "type"): Item.Type,
    ("item", "status"): Item.Status,
    ("item_price", "status"): ItemPrice.Status,
    ("item_price", "pricing_model"): enums.PricingModel,
    ("item_price", "period_unit"): ItemPrice.PeriodUnit,
    ("item_price", "item_type"): enums.ItemType,
    ("subscription", "status"): Subscription.Status,
    ("subscription", "billing_period_unit"): Subscription.BillingPeriodUnit,
    ("subscription", "auto_collection"): enums.AutoCollection,
    ("ramp", "status"): Ramp.Status,
    ("invoice", "status"): Invoice.Status,
    ("invoice", "price_type"): enums.PriceType,
    ("invoice", "dunning_status"): Invoice.DunningStatus,
    ("line_items", "entity_type"): Invoice.LineItemEntityType,
    ("line_items", "pricing_model"): enums.PricingModel,
    ("subscription_items", "item_type"): enums.ItemType,
}


@pytest.fixture(scope="module")
def exchanges() -> Iterator[list[Exchange]]:
    recorder = Recorder(create_app(api_key=API_KEY))
    with serve_app(recorder) as url:
        _drive_every_endpoint(chargebee_client(api_key=API_KEY, site=SITE, api_base=url))
    yield recorder.exchanges


def _drive_every_endpoint(cb: chargebee.Chargebee) -> None:
    """One pass over every route, in the order a deal would use them."""
    now = int(time.time())
    cb.Customer.create(
        {
            "id": "acme",
            "company": "Acme Robotics GmbH",
            "email": "ap@acme.example",
            "auto_collection": "off",
            "net_term_days": 30,
            "preferred_currency_code": "EUR",
            "billing_address": {"line1": "1 Hauptstr.", "city": "Berlin", "country": "DE"},
            "meta_data": '{"deal_id": "deal-1"}',
        }
    )
    cb.Customer.retrieve("acme")
    cb.Customer.list({"email": {"is": "ap@acme.example"}})
    cb.ItemFamily.create({"id": "qtc", "name": "Quote-to-Cash"})
    cb.ItemFamily.retrieve("qtc")
    cb.Item.create({"id": "PRO", "name": "Pro", "type": "plan", "item_family_id": "qtc"})
    cb.Item.create({"id": "IMPL", "name": "Impl", "type": "charge", "item_family_id": "qtc"})
    cb.Item.retrieve("PRO")
    cb.Item.list({"item_family_id": {"is": "qtc"}})
    cb.ItemPrice.create(
        {
            "id": "PRO-EUR-1-year",
            "name": "Pro EUR yearly",
            "item_id": "PRO",
            "pricing_model": "per_unit",
            "price": 132000,
            "currency_code": "EUR",
            "period": 1,
            "period_unit": "year",
        }
    )
    cb.ItemPrice.create(
        {
            "id": "IMPL-EUR",
            "name": "Impl EUR",
            "item_id": "IMPL",
            "pricing_model": "per_unit",
            "price": 460000,
            "currency_code": "EUR",
        }
    )
    cb.ItemPrice.retrieve("PRO-EUR-1-year")
    cb.ItemPrice.list({"item_id": {"is": "PRO"}})
    cb.Subscription.create_with_items(
        "acme",
        {
            "id": "sub-1",
            "subscription_items": [
                {"item_price_id": "PRO-EUR-1-year", "quantity": 10, "unit_price": 118800},
                {"item_price_id": "IMPL-EUR", "quantity": 1, "unit_price": 460000},
            ],
            "start_date": now - 60,
            "billing_cycles": 3,
            "net_term_days": 30,
            "auto_collection": "off",
            "first_invoice_pending": True,
            "meta_data": '{"deal_id": "deal-1"}',
        },
    )
    cb.Subscription.retrieve("sub-1")
    cb.Subscription.list({"customer_id": {"is": "acme"}})
    ramp = cb.Ramp.create_for_subscription(
        "sub-1",
        {
            "effective_from": now + 366 * 86400,
            "items_to_update": [{"item_price_id": "PRO-EUR-1-year", "unit_price": 127116}],
        },
    ).ramp
    cb.Ramp.retrieve(ramp.id)
    cb.Ramp.list({"subscription_id": {"is": "sub-1"}})
    first = cb.Invoice.list({"subscription_id": {"is": "sub-1"}}).list[0].invoice
    cb.Invoice.retrieve(first.id)
    cb.Invoice.close(first.id)
    cb.Invoice.send_email(first.id)
    cb.EmailLog.email_logs_for_customer("acme")
    other = cb.Invoice.create_for_charge_items_and_charges(
        {
            "customer_id": "acme",
            "currency_code": "EUR",
            "item_prices": [{"item_price_id": "IMPL-EUR", "quantity": 1, "unit_price": 1000}],
            "charges": [{"amount": 500, "description": "Travel"}],
        }
    ).invoice
    cb.Invoice.void_invoice(other.id)
    with pytest.raises(chargebee.InvalidRequestError):
        cb.Customer.retrieve("nobody")


def _route(exchange: Exchange) -> str | None:
    for endpoint in ENDPOINTS:
        pattern = re.sub(r"\{[a-z_]+\}", "[^/]+", f"{API}{endpoint.path}")
        if exchange.method == endpoint.method and re.fullmatch(pattern, exchange.path):
            return f"{endpoint.method} {endpoint.path}"
    return None


def _violations(name: str, body: Any, model: type[Model], where: str) -> list[str]:
    if not isinstance(body, dict):
        return [f"{where}: not an object"]
    hints = typing.get_type_hints(model)
    found = []
    for key, value in body.items():
        if key in ALWAYS_SENT:
            continue
        if key not in hints:
            found.append(f"{where}.{key}: not in the SDK's {model.__name__}")
            continue
        enum = ENUMS.get((name, key))
        if enum is not None and value not in {member.value for member in enum}:
            found.append(f"{where}.{key}: {value!r} is not one of {enum.__name__}")
        kind = hints[key]
        if typing.get_origin(kind) is list:
            (inner,) = typing.get_args(kind)
            if isinstance(inner, type) and issubclass(inner, Model):
                for i, item in enumerate(value):
                    found += _violations(key, item, inner, f"{where}.{key}[{i}]")
        elif isinstance(kind, type) and issubclass(kind, Model) and value is not None:
            found += _violations(key, value, kind, f"{where}.{key}")
    return found


def _resources(body: dict[str, Any]) -> list[tuple[str, Any]]:
    """The resources of one reply: ``{"customer": {...}}`` or a list of such entries."""
    if "list" in body:
        return [(name, value) for entry in body["list"] for name, value in entry.items()]
    return [
        (name, item)
        for name, value in body.items()
        for item in (value if isinstance(value, list) else [value])
    ]


def test_every_route_of_the_emulator_was_driven(exchanges: list[Exchange]) -> None:
    driven = {_route(e) for e in exchanges if e.status == 200}
    every = {f"{e.method} {e.path}" for e in ENDPOINTS}

    assert every - driven == set()


def test_every_response_matches_the_sdks_model_of_chargebee(exchanges: list[Exchange]) -> None:
    problems: dict[str, list[str]] = {}
    for e in exchanges:
        if e.status != 200:
            continue
        body = e.json()
        found = []
        for name, value in _resources(body):
            plural = {"email_logs": "email_log"}.get(name, name)
            model = RESOURCES.get(plural)
            if model is None:
                found.append(f"{name}: not a resource of Chargebee's API")
                continue
            found += _violations(plural, value, model, plural)
        if found:
            problems[f"{e.method} {e.path}"] = found

    assert problems == {}


def test_lists_carry_next_offset_only_when_there_is_more(exchanges: list[Exchange]) -> None:
    lists = [e.json() for e in exchanges if e.method == "GET" and "list" in e.json()]

    assert lists
    assert all(set(body) <= {"list", "next_offset"} for body in lists)


def test_every_error_has_chargebees_error_attributes(exchanges: list[Exchange]) -> None:
    errors = [e.json() for e in exchanges if e.status >= 400]

    assert errors
    for body in errors:
        assert {"message", "api_error_code", "http_status_code"} <= set(body)
        assert body.get("type") in (None, "invalid_request", "payment", "operation_failed")
