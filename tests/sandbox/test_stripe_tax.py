"""The emulator's Stripe Tax: the documented registrations, inclusive prices, and the customer
location Stripe Tax needs, through the real SDK."""

from __future__ import annotations

from typing import Any

import pytest
import stripe


def customer(client: stripe.StripeClient, country: str | None, **extra: Any) -> str:
    params: dict[str, Any] = {"name": "Acme", **extra}
    if country is not None:
        params["address"] = {"line1": "1 Main St", "country": country}
    return client.v1.customers.create(params=params).id  # type: ignore[arg-type]


def invoice_with(
    client: stripe.StripeClient, customer_id: str, amount: int, behavior: str
) -> stripe.Invoice:
    product = client.v1.products.create(params={"name": "Seat"})
    invoice = client.v1.invoices.create(
        params={
            "customer": customer_id,
            "currency": "gbp",
            "collection_method": "send_invoice",
            "days_until_due": 30,
            "automatic_tax": {"enabled": True},
        }
    )
    client.v1.invoice_items.create(
        params={
            "customer": customer_id,
            "invoice": invoice.id,
            "price_data": {
                "currency": "gbp",
                "product": product.id,
                "unit_amount": amount,
                "tax_behavior": behavior,
            },
        }
    )
    return client.v1.invoices.retrieve(invoice.id)


def test_exclusive_tax_is_added_on_top(stripe_client: stripe.StripeClient) -> None:
    invoice = invoice_with(stripe_client, customer(stripe_client, "GB"), 10001, "exclusive")
    assert (invoice.subtotal, invoice.total_excluding_tax, invoice.total) == (10001, 10001, 12001)
    [tax] = invoice.total_taxes or []
    assert (tax.amount, tax.taxable_amount, tax.taxability_reason) == (
        2000,
        10001,
        "standard_rated",
    )
    assert invoice.automatic_tax.status == "complete"


def test_inclusive_tax_is_the_part_of_the_amount_that_is_tax(
    stripe_client: stripe.StripeClient,
) -> None:
    invoice = invoice_with(stripe_client, customer(stripe_client, "GB"), 12000, "inclusive")
    assert (invoice.total, invoice.total_excluding_tax) == (12000, 10000)
    assert [t.amount for t in invoice.total_taxes or []] == [2000]


def test_an_exempt_customer_pays_no_tax(stripe_client: stripe.StripeClient) -> None:
    cid = customer(stripe_client, "GB", tax_exempt="exempt")
    invoice = invoice_with(stripe_client, cid, 10000, "exclusive")
    assert invoice.total == 10000
    assert [t.taxability_reason for t in invoice.total_taxes or []] == ["customer_exempt"]


def test_a_vat_id_of_zeros_is_unverified(stripe_client: stripe.StripeClient) -> None:
    cid = customer(stripe_client, "DE", tax_id_data=[{"type": "eu_vat", "value": "DE000000000"}])
    [tax_id] = stripe_client.v1.customers.tax_ids.list(cid).data
    assert tax_id.verification is not None and tax_id.verification.status == "unverified"


def test_automatic_tax_needs_the_customers_location(stripe_client: stripe.StripeClient) -> None:
    cid = customer(stripe_client, None)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.invoices.create(
            params={
                "customer": cid,
                "collection_method": "send_invoice",
                "days_until_due": 30,
                "automatic_tax": {"enabled": True},
            }
        )
    assert caught.value.code == "customer_tax_location_invalid"
