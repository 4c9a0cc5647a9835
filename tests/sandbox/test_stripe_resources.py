"""Customers, products, prices, subscriptions, invoices, invoice items and events via the SDK."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest
import stripe

from tests.sandbox.conftest import raw_params

DAY = 86400


def _customer(
    client: stripe.StripeClient, deal_id: str = "deal-006A", **extra: Any
) -> stripe.Customer:
    params: dict[str, Any] = {
        "name": "Acme Robotics, Inc.",
        "email": "ap@acme.example",
        "address": {
            "line1": "1 Main St",
            "city": "Austin",
            "state": "TX",
            "postal_code": "78701",
            "country": "US",
        },
        "tax_id_data": [{"type": "us_ein", "value": "12-3456789"}],
        "metadata": {"deal_id": deal_id},
        **extra,
    }
    return client.v1.customers.create(params=raw_params(params))


def _yearly_price(client: stripe.StripeClient, unit_amount: int, **extra: Any) -> stripe.Price:
    product = client.v1.products.create(params={"name": "Platform Pro"})
    params: dict[str, Any] = {
        "currency": "usd",
        "product": product.id,
        "unit_amount": unit_amount,
        "recurring": {"interval": "year"},
        **extra,
    }
    return client.v1.prices.create(params=raw_params(params))


def test_customer_keeps_legal_entity_address_email_metadata_and_tax_id(
    stripe_client: stripe.StripeClient,
) -> None:
    customer = _customer(stripe_client)

    fetched = stripe_client.v1.customers.retrieve(customer.id)
    assert fetched.name == "Acme Robotics, Inc."
    assert fetched.email == "ap@acme.example"
    assert fetched.address is not None and fetched.address.postal_code == "78701"
    assert fetched.metadata is not None and fetched.metadata["deal_id"] == "deal-006A"
    tax_ids = stripe_client.v1.customers.tax_ids.list(customer.id).data
    assert [(t.type, t.value, t.country) for t in tax_ids] == [("us_ein", "12-3456789", "US")]


def test_customers_are_found_by_email_and_by_deal_metadata_search(
    stripe_client: stripe.StripeClient,
) -> None:
    wanted = _customer(stripe_client, "deal-1")
    _customer(stripe_client, "deal-2", email="other@acme.example")

    by_email = stripe_client.v1.customers.list(params={"email": "ap@acme.example"}).data
    by_deal = stripe_client.v1.customers.search(
        params={"query": "metadata['deal_id']:'deal-1'"}
    ).data
    by_email_query = stripe_client.v1.customers.search(
        params={"query": "email:'other@acme.example'"}
    ).data

    assert [c.id for c in by_email] == [wanted.id]
    assert [c.id for c in by_deal] == [wanted.id]
    assert [c.email for c in by_email_query] == ["other@acme.example"]
    assert by_email_query[0].metadata is not None
    assert by_email_query[0].metadata["deal_id"] == "deal-2"


def test_search_with_unknown_field_is_an_invalid_request(
    stripe_client: stripe.StripeClient,
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.customers.search(params={"query": "colour:'red'"})
    assert caught.value.param == "query"


def test_list_pages_newest_first_with_starting_after(stripe_client: stripe.StripeClient) -> None:
    ids = [stripe_client.v1.customers.create(params={"name": f"c{i}"}).id for i in range(5)]

    first = stripe_client.v1.customers.list(params={"limit": 2})
    rest = stripe_client.v1.customers.list(
        params={"limit": 10, "starting_after": first.data[-1].id}
    )
    every = list(stripe_client.v1.customers.list(params={"limit": 2}).auto_paging_iter())

    assert [c.id for c in first.data] == ids[::-1][:2] and first.has_more
    assert [c.id for c in rest.data] == ids[::-1][2:] and not rest.has_more
    assert [c.id for c in every] == ids[::-1]


def test_product_with_custom_id_is_created_once(stripe_client: stripe.StripeClient) -> None:
    product = stripe_client.v1.products.create(
        params={"id": "PLATFORM-PRO", "name": "Platform Pro"}
    )

    assert stripe_client.v1.products.retrieve("PLATFORM-PRO").name == "Platform Pro"
    assert product.id == "PLATFORM-PRO"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.products.create(params={"id": "PLATFORM-PRO", "name": "Again"})
    assert caught.value.code == "resource_already_exists"


def test_prices_are_found_by_lookup_key_and_a_key_moves_only_on_transfer(
    stripe_client: stripe.StripeClient,
) -> None:
    old = _yearly_price(stripe_client, 129600, lookup_key="platform-pro-usd")
    one_time = stripe_client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": 500000,
            "product_data": {"name": "Implementation"},
        }
    )

    with pytest.raises(stripe.InvalidRequestError):
        _yearly_price(stripe_client, 138672, lookup_key="platform-pro-usd")
    new = _yearly_price(
        stripe_client, 138672, lookup_key="platform-pro-usd", transfer_lookup_key=True
    )
    found = stripe_client.v1.prices.list(params={"lookup_keys": ["platform-pro-usd"]}).data

    assert [p.id for p in found] == [new.id]
    assert stripe_client.v1.prices.retrieve(old.id).lookup_key is None
    assert one_time.type == "one_time" and one_time.recurring is None
    assert new.recurring is not None and new.recurring.interval == "year"
    assert new.unit_amount == 138672 and new.unit_amount_decimal == Decimal("138672")


def test_send_invoice_subscription_bills_every_item_for_the_first_period_in_a_draft_invoice(
    stripe_client: stripe.StripeClient,
) -> None:
    customer = _customer(stripe_client)
    seats = _yearly_price(stripe_client, 129600)
    support = _yearly_price(stripe_client, 250000)
    setup = stripe_client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": 500000,
            "product_data": {"name": "Implementation"},
        }
    )

    sub = stripe_client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": seats.id, "quantity": 50}, {"price": support.id}],
            "collection_method": "send_invoice",
            "days_until_due": 30,
            "proration_behavior": "none",
            "add_invoice_items": [{"price": setup.id, "quantity": 1}],
            "metadata": {"deal_id": "deal-006A"},
            "expand": ["latest_invoice"],
        }
    )

    invoice = sub.latest_invoice
    assert isinstance(invoice, stripe.Invoice)
    assert sub.status == "active" and sub.collection_method == "send_invoice"
    assert sub.days_until_due == 30 and sub.metadata["deal_id"] == "deal-006A"
    assert invoice.status == "draft" and invoice.collection_method == "send_invoice"
    assert sorted(line.amount for line in invoice.lines.data) == [250000, 500000, 6480000]
    assert invoice.subtotal == invoice.total == invoice.amount_due == 7230000
    item = sub["items"].data[0]
    year_later = item.current_period_start + 365 * DAY
    assert item.current_period_end in (year_later, year_later + DAY)
    recurring = [
        line
        for line in invoice.lines.data
        if line.parent is not None and line.parent.type == "subscription_item_details"
    ]
    assert {line.period.end for line in recurring} == {item.current_period_end}
    assert all(line.pricing is not None for line in invoice.lines.data)


def test_subscription_with_price_data_items_creates_inline_prices(
    stripe_client: stripe.StripeClient,
) -> None:
    customer = _customer(stripe_client)
    product = stripe_client.v1.products.create(params={"name": "Platform Pro"})

    sub = stripe_client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [
                {
                    "price_data": {
                        "currency": "usd",
                        "product": product.id,
                        "unit_amount": 10800,
                        "recurring": {"interval": "month", "interval_count": 3},
                    },
                    "quantity": 5,
                }
            ],
            "collection_method": "send_invoice",
            "days_until_due": 15,
        }
    )

    price = sub["items"].data[0].price
    assert price.unit_amount == 10800 and price.active is False
    assert price.recurring is not None and price.recurring.interval_count == 3
    invoice = stripe_client.v1.invoices.retrieve(str(sub.latest_invoice))
    assert invoice.total == 54000


def test_future_billing_anchor_without_proration_bills_only_the_one_time_items_first(
    stripe_client: stripe.StripeClient,
) -> None:
    customer = _customer(stripe_client)
    seats = _yearly_price(stripe_client, 129600)
    anchor = int(time.time()) + 20 * DAY

    sub = stripe_client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": seats.id, "quantity": 50}],
            "collection_method": "send_invoice",
            "days_until_due": 30,
            "billing_cycle_anchor": anchor,
            "proration_behavior": "none",
            "add_invoice_items": [
                {
                    "price_data": {
                        "currency": "usd",
                        "product": str(seats.product),
                        "unit_amount": 35507,
                    }
                }
            ],
        }
    )

    invoice = stripe_client.v1.invoices.retrieve(str(sub.latest_invoice))
    assert [line.amount for line in invoice.lines.data] == [35507]
    assert sub.billing_cycle_anchor == anchor
    assert sub["items"].data[0].current_period_end == anchor


def test_future_billing_anchor_with_prorations_bills_the_stub_share(
    stripe_client: stripe.StripeClient,
) -> None:
    customer = _customer(stripe_client)
    monthly = stripe_client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": 3000,
            "recurring": {"interval": "month"},
            "product_data": {"name": "Seat"},
        }
    )
    anchor = int(time.time()) + 10 * DAY

    sub = stripe_client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": monthly.id, "quantity": 1}],
            "collection_method": "send_invoice",
            "days_until_due": 0,
            "billing_cycle_anchor": anchor,
        }
    )

    (line,) = stripe_client.v1.invoices.retrieve(str(sub.latest_invoice)).lines.data
    assert line.parent is not None and line.parent.subscription_item_details is not None
    assert line.parent.subscription_item_details.proration is True
    # Ten days of a 28-31 day month.
    assert 3000 * 10 // 31 <= line.amount <= 3000 * 10 // 28 + 1


def test_backdated_subscription_starts_its_first_period_at_the_backdate(
    stripe_client: stripe.StripeClient,
) -> None:
    customer = _customer(stripe_client)
    seats = _yearly_price(stripe_client, 129600)
    backdate = int(time.time()) - 3 * DAY

    sub = stripe_client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": seats.id, "quantity": 2}],
            "collection_method": "send_invoice",
            "days_until_due": 30,
            "backdate_start_date": backdate,
        }
    )

    assert sub.start_date == backdate and sub.billing_cycle_anchor == backdate
    assert sub["items"].data[0].current_period_start == backdate
    assert stripe_client.v1.invoices.retrieve(str(sub.latest_invoice)).total == 259200


def test_finalizing_numbers_the_invoice_and_sets_due_date_from_payment_terms(
    stripe_client: stripe.StripeClient,
) -> None:
    customer = _customer(stripe_client)
    seats = _yearly_price(stripe_client, 129600)
    sub = stripe_client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": seats.id, "quantity": 50}],
            "collection_method": "send_invoice",
            "days_until_due": 30,
        }
    )

    invoice = stripe_client.v1.invoices.finalize_invoice(str(sub.latest_invoice))
    sent = stripe_client.v1.invoices.send_invoice(invoice.id)

    finalized_at = invoice.status_transitions.finalized_at
    assert invoice.status == "open" and sent.status == "open"
    assert invoice.number == f"{customer.invoice_prefix}-0001"
    assert finalized_at is not None and invoice.due_date == finalized_at + 30 * DAY
    assert invoice.hosted_invoice_url is not None
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.invoices.finalize_invoice(invoice.id)
    types = [e.type for e in stripe_client.v1.events.list(params={"type": "invoice.*"}).data]
    assert types == ["invoice.sent", "invoice.finalized", "invoice.created"]


def test_invoice_is_paid_out_of_band_or_voided(stripe_client: stripe.StripeClient) -> None:
    customer = _customer(stripe_client)
    seats = _yearly_price(stripe_client, 1000)

    def open_invoice() -> stripe.Invoice:
        sub = stripe_client.v1.subscriptions.create(
            params={
                "customer": customer.id,
                "items": [{"price": seats.id}],
                "collection_method": "send_invoice",
                "days_until_due": 0,
            }
        )
        return stripe_client.v1.invoices.finalize_invoice(str(sub.latest_invoice))

    paid = stripe_client.v1.invoices.pay(open_invoice().id, params={"paid_out_of_band": True})
    voided = stripe_client.v1.invoices.void_invoice(open_invoice().id)

    assert paid.status == "paid" and paid.amount_paid == 1000 and paid.amount_remaining == 0
    assert voided.status == "void"
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.invoices.void_invoice(paid.id)
    open_ids = stripe_client.v1.invoices.list(params={"customer": customer.id, "status": "paid"})
    assert [i.id for i in open_ids.data] == [paid.id]


def test_invoices_are_listed_by_subscription(stripe_client: stripe.StripeClient) -> None:
    customer = _customer(stripe_client)
    seats = _yearly_price(stripe_client, 1000)
    subs = [
        stripe_client.v1.subscriptions.create(
            params={
                "customer": customer.id,
                "items": [{"price": seats.id}],
                "collection_method": "send_invoice",
                "days_until_due": 0,
            }
        )
        for _ in range(2)
    ]

    listed = stripe_client.v1.invoices.list(params={"subscription": subs[1].id}).data

    assert [i.id for i in listed] == [subs[1].latest_invoice]


def test_pending_invoice_items_wait_for_an_invoice_that_includes_them(
    stripe_client: stripe.StripeClient,
) -> None:
    customer = _customer(stripe_client)
    item = stripe_client.v1.invoice_items.create(
        params={"customer": customer.id, "amount": 4200, "currency": "usd", "description": "Travel"}
    )
    priced = stripe_client.v1.invoice_items.create(
        params={
            "customer": customer.id,
            "price_data": {
                "currency": "usd",
                "product": stripe_client.v1.products.create(params={"name": "Training"}).id,
                "unit_amount": 900,
            },
            "quantity": 3,
        }
    )

    pending = stripe_client.v1.invoice_items.list(params={"customer": customer.id, "pending": True})
    invoice = stripe_client.v1.invoices.create(
        params={
            "customer": customer.id,
            "collection_method": "send_invoice",
            "days_until_due": 15,
            "pending_invoice_items_behavior": "include",
        }
    )

    assert item.invoice is None and priced.amount == 2700
    assert {i.id for i in pending.data} == {item.id, priced.id}
    assert invoice.total == 6900 and invoice.billing_reason == "manual"
    assert stripe_client.v1.invoice_items.retrieve(item.id).invoice == invoice.id
    lines = stripe_client.v1.invoices.line_items.list(invoice.id).data
    assert sorted(line.amount for line in lines) == [2700, 4200]


def test_preview_shows_the_first_invoice_without_creating_anything(
    stripe_client: stripe.StripeClient, stripe_url: str
) -> None:
    customer = _customer(stripe_client)
    seats = _yearly_price(stripe_client, 129600)
    before = stripe_client.v1.invoices.list().data

    preview = stripe_client.v1.invoices.create_preview(
        params={
            "customer": customer.id,
            "subscription_details": {"items": [{"price": seats.id, "quantity": 50}]},
        }
    )

    assert preview.total == 6480000
    assert stripe_client.v1.invoices.list().data == before
    assert stripe_client.v1.subscriptions.list(params={"customer": customer.id}).data == []


def test_events_record_what_happened_filtered_by_type(stripe_client: stripe.StripeClient) -> None:
    customer = _customer(stripe_client)

    created = stripe_client.v1.events.list(params={"type": "customer.created"}).data
    tax = stripe_client.v1.events.list(params={"type": "customer.tax_id.created"}).data

    assert [e.data.object["id"] for e in created] == [customer.id]
    assert tax[0].data.object["value"] == "12-3456789"
    assert stripe_client.v1.events.retrieve(created[0].id).type == "customer.created"


def test_events_are_filtered_by_their_creation_time(stripe_client: stripe.StripeClient) -> None:
    customer = _customer(stripe_client)
    at = stripe_client.v1.events.list(params={"type": "customer.created"}).data[0].created

    def count(created: stripe.params.EventListParamsCreated) -> int:
        listed = stripe_client.v1.events.list(
            params={"type": "customer.created", "created": created}
        )
        return len([e for e in listed.data if e.data.object["id"] == customer.id])

    assert (count({"gte": at}), count({"lte": at}), count({"gt": at}), count({"lt": at})) == (
        1,
        1,
        0,
        0,
    )


def test_expand_inlines_related_objects_in_lists(stripe_client: stripe.StripeClient) -> None:
    customer = _customer(stripe_client)
    seats = _yearly_price(stripe_client, 1000)
    stripe_client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": seats.id}],
            "collection_method": "send_invoice",
            "days_until_due": 0,
        }
    )

    subs = stripe_client.v1.subscriptions.list(
        params={"expand": ["data.customer", "data.latest_invoice"]}
    ).data

    assert isinstance(subs[0].customer, stripe.Customer)
    assert isinstance(subs[0].latest_invoice, stripe.Invoice)
    assert subs[0].customer.email == "ap@acme.example"
    assert subs[0].latest_invoice.total == 1000


def test_subscriptions_are_searchable_by_deal_metadata(stripe_client: stripe.StripeClient) -> None:
    customer = _customer(stripe_client)
    seats = _yearly_price(stripe_client, 1000)
    sub = stripe_client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": seats.id}],
            "collection_method": "send_invoice",
            "days_until_due": 0,
            "metadata": {"deal_id": "deal-9"},
        }
    )

    found = stripe_client.v1.subscriptions.search(
        params={"query": "metadata['deal_id']:'deal-9' AND status:'active'"}
    ).data

    assert [s.id for s in found] == [sub.id]


def test_global_api_base_configuration_reaches_the_emulator(
    stripe_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stripe, "api_key", "sk_test_sandbox")
    monkeypatch.setattr(stripe, "api_base", stripe_url)
    monkeypatch.setattr(stripe, "max_network_retries", 0)

    customer = stripe.Customer.create(name="Acme", metadata={"deal_id": "deal-7"})

    fetched = stripe.Customer.retrieve(customer.id)
    assert fetched.metadata is not None and fetched.metadata["deal_id"] == "deal-7"
