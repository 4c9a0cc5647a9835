"""A restart with a state file keeps every object and idempotency key."""

from __future__ import annotations

from pathlib import Path

import httpx
import stripe

from sandbox.stripe.testing import serve_stripe_emulator
from tests.sandbox.conftest import make_stripe_client


def test_restart_with_a_state_file_loses_nothing(tmp_path: Path) -> None:
    state = tmp_path / "stripe.json"
    with serve_stripe_emulator(state) as url:
        client = make_stripe_client(url)
        customer = client.v1.customers.create(
            params={"name": "Acme", "tax_id_data": [{"type": "us_ein", "value": "12-3456789"}]},
            options={"idempotency_key": "qtc:deal-1:customer"},
        )
        price = client.v1.prices.create(
            params={
                "currency": "usd",
                "unit_amount": 1000,
                "recurring": {"interval": "year"},
                "product_data": {"name": "Seat"},
            }
        )
        sub = client.v1.subscriptions.create(
            params={
                "customer": customer.id,
                "items": [{"price": price.id, "quantity": 3}],
                "collection_method": "send_invoice",
                "days_until_due": 30,
            }
        )
        invoice = client.v1.invoices.finalize_invoice(str(sub.latest_invoice))
        events_before = [e.id for e in client.v1.events.list(params={"limit": 100}).data]

    with serve_stripe_emulator(state) as url:
        client = make_stripe_client(url)
        replay = client.v1.customers.create(
            params={"name": "Acme", "tax_id_data": [{"type": "us_ein", "value": "12-3456789"}]},
            options={"idempotency_key": "qtc:deal-1:customer"},
        )
        restored_invoice = client.v1.invoices.retrieve(invoice.id)
        restored_sub = client.v1.subscriptions.retrieve(sub.id)
        events_after = [e.id for e in client.v1.events.list(params={"limit": 100}).data]
        tax_ids = client.v1.customers.tax_ids.list(customer.id).data
        second = client.v1.subscriptions.create(
            params={
                "customer": customer.id,
                "items": [{"price": price.id}],
                "collection_method": "send_invoice",
                "days_until_due": 30,
            }
        )
        second_invoice = client.v1.invoices.finalize_invoice(str(second.latest_invoice))

    assert replay.id == customer.id
    assert replay.last_response is not None
    assert replay.last_response.headers["Idempotent-Replayed"] == "true"
    assert restored_invoice.number == invoice.number and restored_invoice.total == 3000
    assert restored_sub.status == "active"
    assert events_after == events_before
    assert [t.value for t in tax_ids] == ["12-3456789"]
    assert second_invoice.number == f"{customer.invoice_prefix}-0002"


def test_reset_empties_the_account(stripe_client: stripe.StripeClient, stripe_url: str) -> None:
    stripe_client.v1.customers.create(params={"name": "Acme"})

    httpx.post(f"{stripe_url}/_sandbox/reset").raise_for_status()

    assert stripe_client.v1.customers.list().data == []
    assert httpx.get(f"{stripe_url}/_sandbox/stats").json()["objects"]["customer"] == 0
