"""Every Stripe endpoint the emulator serves, driven through the official SDK, answers with bodies
that match Stripe's own model of each object (as generated into the SDK from Stripe's OpenAPI
document): no property Stripe does not send, none it always sends missing, no value outside an
enum, ids where Stripe sends ids and objects where an expansion asked for them."""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator

import pytest
import stripe
from stripe.params._customer_create_params import CustomerCreateParamsTaxIdDatum

from qtc import tax_ids
from sandbox.stripe.app import ENDPOINTS, create_app
from sandbox.stripe.testing import serve_app
from tests.conformance.recording import Exchange, Recorder
from tests.conformance.vendor_models import StripeSchemas

KEY = "sk_test_sandbox"


@pytest.fixture(scope="module")
def exchanges() -> Iterator[list[Exchange]]:
    recorder = Recorder(create_app(api_key=KEY))
    with serve_app(recorder) as url:
        client = stripe.StripeClient(KEY, base_addresses={"api": url}, max_network_retries=0)
        _drive_every_endpoint(client)
    yield recorder.exchanges


def _drive_every_endpoint(c: stripe.StripeClient) -> None:
    """One pass over every route, in the order a deal and an operator would use them."""
    v1 = c.v1
    customer = v1.customers.create(
        params={
            "name": "Acme Robotics GmbH",
            "email": "ap@acme.example",
            "address": {
                "line1": "1 Hauptstr.",
                "city": "Berlin",
                "postal_code": "10115",
                "country": "DE",
            },
            "tax_id_data": [{"type": "eu_vat", "value": "DE123456789"}],
            "tax_exempt": "reverse",
            "metadata": {"deal_id": "deal-1"},
        }
    )
    v1.customers.retrieve(customer.id, params={"expand": ["tax_ids", "subscriptions"]})
    v1.customers.update(customer.id, params={"metadata": {"crm": "salesforce"}})
    v1.customers.list(params={"email": "ap@acme.example"})
    v1.customers.search(params={"query": "metadata['deal_id']:'deal-1'"})
    v1.customers.tax_ids.create(customer.id, params={"type": "de_stn", "value": "1234567890"})
    v1.customers.tax_ids.list(customer.id)

    product = v1.products.create(params={"id": "PLATFORM-PRO", "name": "Platform Pro"})
    v1.products.retrieve(product.id)
    v1.products.update(product.id, params={"metadata": {"sku": "PLATFORM-PRO"}})
    v1.products.list()
    yearly = v1.prices.create(
        params={
            "product": product.id,
            "currency": "eur",
            "unit_amount": 132000,
            "recurring": {"interval": "year"},
            "tax_behavior": "exclusive",
        }
    )
    uplifted = v1.prices.create(
        params={
            "product": product.id,
            "currency": "eur",
            "unit_amount": 141240,
            "recurring": {"interval": "year"},
        }
    )
    one_time = v1.prices.create(
        params={
            "product_data": {"name": "Implementation"},
            "currency": "eur",
            "unit_amount": 500000,
        }
    )
    v1.prices.retrieve(yearly.id)
    v1.prices.update(yearly.id, params={"metadata": {"year": "1"}})
    v1.prices.list(params={"product": product.id, "type": "recurring"})

    v1.invoices.create_preview(
        params={
            "customer": customer.id,
            "subscription_details": {"items": [{"price": yearly.id, "quantity": 50}]},
        }
    )
    schedule = v1.subscription_schedules.create(
        params={
            "customer": customer.id,
            "start_date": "now",
            "end_behavior": "cancel",
            "default_settings": {
                "collection_method": "send_invoice",
                "invoice_settings": {"days_until_due": 30},
            },
            "phases": [
                {
                    "items": [{"price": yearly.id, "quantity": 50}],
                    "add_invoice_items": [{"price": one_time.id}],
                    "duration": {"interval": "year", "interval_count": 1},
                },
                {
                    "items": [{"price": uplifted.id, "quantity": 50}],
                    "duration": {"interval": "year", "interval_count": 1},
                },
            ],
            "metadata": {"deal_id": "deal-1"},
            "expand": ["subscription.latest_invoice"],
        }
    )
    v1.subscription_schedules.retrieve(schedule.id, params={"expand": ["customer"]})
    v1.subscription_schedules.update(schedule.id, params={"metadata": {"note": "signed"}})
    v1.subscription_schedules.list(params={"customer": customer.id})
    expanded = schedule.subscription
    assert expanded is not None and not isinstance(expanded, str)
    subscription_id = expanded.id
    subscription = v1.subscriptions.retrieve(subscription_id)
    v1.subscriptions.update(subscription_id, params={"metadata": {"deal_id": "deal-1"}})
    v1.subscriptions.list(params={"customer": customer.id, "status": "all"})
    v1.subscriptions.search(params={"query": "metadata['deal_id']:'deal-1'"})
    v1.subscription_items.list(params={"subscription": subscription_id})
    v1.subscription_items.retrieve(subscription["items"].data[0].id)

    first = v1.invoices.list(params={"subscription": subscription_id}).data[0]
    v1.invoices.update(first.id, params={"description": "First year"})
    v1.invoices.finalize_invoice(first.id, params={"auto_advance": False})
    v1.invoices.send_invoice(first.id)
    v1.invoices.retrieve(first.id, params={"expand": ["customer"]})
    v1.invoices.line_items.list(first.id, params={"limit": 5})
    v1.invoices.pay(first.id, params={"paid_out_of_band": True})

    item = v1.invoice_items.create(
        params={"customer": customer.id, "pricing": {"price": one_time.id}}
    )
    v1.invoice_items.retrieve(item.id)
    v1.invoice_items.list(params={"customer": customer.id})
    extra = v1.invoices.create(
        params={
            "customer": customer.id,
            "collection_method": "send_invoice",
            "days_until_due": 30,
            "pending_invoice_items_behavior": "include",
        }
    )
    v1.invoices.finalize_invoice(extra.id)
    v1.invoices.mark_uncollectible(extra.id)
    v1.invoice_items.create(params={"customer": customer.id, "pricing": {"price": one_time.id}})
    v1.invoice_items.create(params={"customer": customer.id, "pricing": {"price": one_time.id}})
    voidable = v1.invoices.create(
        params={
            "customer": customer.id,
            "collection_method": "send_invoice",
            "days_until_due": 30,
            "pending_invoice_items_behavior": "include",
        }
    )
    v1.invoices.finalize_invoice(voidable.id)
    v1.invoices.void_invoice(voidable.id)
    draft = v1.invoices.create(
        params={"customer": customer.id, "collection_method": "send_invoice", "days_until_due": 15}
    )
    v1.invoices.delete(draft.id)
    spare = v1.invoice_items.create(
        params={"customer": customer.id, "pricing": {"price": one_time.id}}
    )
    v1.invoice_items.delete(spare.id)

    other = v1.subscriptions.create(
        params={
            "customer": customer.id,
            "collection_method": "send_invoice",
            "days_until_due": 30,
            "items": [{"price": yearly.id, "quantity": 5}],
        }
    )
    v1.subscriptions.cancel(other.id)
    released = v1.subscription_schedules.create(
        params={
            "customer": customer.id,
            "start_date": "now",
            "end_behavior": "release",
            "default_settings": {
                "collection_method": "send_invoice",
                "invoice_settings": {"days_until_due": 30},
            },
            "phases": [
                {
                    "items": [{"price": yearly.id, "quantity": 1}],
                    "duration": {"interval": "year", "interval_count": 1},
                }
            ],
        }
    )
    v1.subscription_schedules.release(released.id)
    future = v1.subscription_schedules.create(
        params={
            "customer": customer.id,
            "start_date": 4_102_444_800,
            "end_behavior": "cancel",
            "default_settings": {
                "collection_method": "send_invoice",
                "invoice_settings": {"days_until_due": 30},
            },
            "phases": [
                {
                    "items": [{"price": yearly.id, "quantity": 1}],
                    "duration": {"interval": "year", "interval_count": 1},
                }
            ],
        }
    )
    v1.subscription_schedules.cancel(future.id)

    events = v1.events.list(params={"limit": 100})
    v1.events.retrieve(events.data[0].id)
    spare_customer = v1.customers.create(params={"name": "Spare"})
    v1.customers.delete(spare_customer.id)


def _route(exchange: Exchange) -> str | None:
    for endpoint in ENDPOINTS:
        if endpoint.method == exchange.method and endpoint.pattern.match(exchange.path):
            return f"{endpoint.method} {endpoint.pattern.pattern}"
    return None


def test_every_route_of_the_emulator_was_driven(exchanges: list[Exchange]) -> None:
    driven = {_route(e) for e in exchanges if e.status == 200}
    every = {f"{e.method} {e.pattern.pattern}" for e in ENDPOINTS}

    assert every - driven == set()


def test_every_response_matches_stripes_model(exchanges: list[Exchange]) -> None:
    schemas = StripeSchemas()
    problems = {
        f"{e.method} {e.path} ({e.status})": found
        for e in exchanges
        if (found := schemas.violations(e.json()))
    }

    assert problems == {}


def test_every_event_carries_its_object_as_stripe_models_it(exchanges: list[Exchange]) -> None:
    schemas = StripeSchemas()
    listed = [e for e in exchanges if re.fullmatch(r"/v1/events", e.path)]
    events = [event for e in listed for event in e.json()["data"]]
    problems = {
        event["type"]: found
        for event in events
        if (found := schemas.violations(event["data"]["object"]))
    }

    assert events and problems == {}


def test_the_cpq_knows_exactly_the_tax_id_types_stripe_lists() -> None:
    """The CPQ refuses a tax-id type the billing system does not list, so its table must list
    every type Stripe's document gives ``tax_id_data[].type`` (a new SDK may add some)."""
    literal, _ = typing.get_args(CustomerCreateParamsTaxIdDatum.__annotations__["type"])

    assert frozenset(typing.get_args(literal)) == tax_ids.TYPES
