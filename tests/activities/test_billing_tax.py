"""Tax and services orders in Stripe: QTC_TAX=on asks Stripe Tax for the tax, the invoice is
reconciled on its amount excluding tax; a services order is one invoice and no subscription.
Through the real stripe SDK against the emulator."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import stripe
from temporalio.testing import ActivityEnvironment

from integrations.stripe.activities import StripeBilling
from integrations.stripe.client import build_stripe_client
from qtc.deal import deal_id_for
from qtc.models import PricedQuote
from qtc.ports import (
    CreateCustomerInput,
    CreateSubscriptionInput,
    InvoiceSent,
    PreviewTaxInput,
    SendInvoiceInput,
)
from runtime.settings import Settings
from sandbox.stripe.testing import serve_stripe_emulator
from tests.activities.billing_deals import days_ago, priced, stub_deal
from tests.activities.test_billing_stripe import fresh

API_KEY = "sk_test_sandbox"


@pytest.fixture(scope="module")
def client() -> Iterator[stripe.StripeClient]:
    with serve_stripe_emulator(api_key=API_KEY) as url:
        yield build_stripe_client(Settings(stripe_api_base=url))


@pytest.fixture(scope="module")
def taxed(client: stripe.StripeClient) -> StripeBilling:
    return StripeBilling(client, tax=True)


def account(country: str, tax_id: dict[str, str] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "legal_name": f"Customer in {country}",
        "billing_email": "ap@customer.example",
        "address": {
            "line1": "1 High St",
            "city": "City",
            "postal_code": "1000",
            "country": country,
        },
    }
    if tax_id is not None:
        doc["tax_id"] = tax_id
    return doc


def bill(billing: StripeBilling, quote: PricedQuote) -> InvoiceSent:
    env = ActivityEnvironment()
    deal_id = deal_id_for(quote.opportunity_id)
    customer = env.run(
        billing.create_billing_customer, CreateCustomerInput(deal_id=deal_id, priced=quote)
    )
    subscription_id = None
    if any(line.kind == "recurring" for line in quote.lines):
        created = env.run(
            billing.create_subscription,
            CreateSubscriptionInput(
                deal_id=deal_id, customer_id=customer.customer_id, priced=quote
            ),
        )
        subscription_id = created.subscription_id
    return env.run(
        billing.send_first_invoice,
        SendInvoiceInput(
            deal_id=deal_id,
            customer_id=customer.customer_id,
            subscription_id=subscription_id,
            priced=quote,
        ),
    )


SIGNED = datetime(2026, 12, 15, 15, 30, tzinfo=UTC)


def test_a_gb_customers_invoice_carries_20_percent_vat_and_reconciles(
    taxed: StripeBilling, client: stripe.StripeClient
) -> None:
    quote = fresh(priced(days_ago(0), account=account("GB")))
    sent = bill(taxed, quote)
    net = quote.first_invoice_total_minor  # 64,800.00 + 5,000.00 one-time
    assert sent.total_excluding_tax_minor == net
    assert sent.tax_minor == net * 20 // 100
    assert sent.total_minor == net + sent.tax_minor
    assert sent.tax_reasons == ["standard_rated"]
    invoice = client.v1.invoices.retrieve(sent.invoice_id)
    assert invoice.status == "open"
    assert invoice.automatic_tax.enabled is True
    assert all(line.taxes and line.taxes[0].tax_behavior == "exclusive" for line in invoice.lines)


@pytest.mark.parametrize(
    ("country", "tax_id", "rate", "reason"),
    [
        ("DE", {"type": "eu_vat", "value": "DE123456789"}, 0, "reverse_charge"),
        ("DE", {"type": "eu_vat", "value": "DE000000000"}, 19, "standard_rated"),
        ("FR", None, 20, "standard_rated"),
        ("IE", {"type": "eu_vat", "value": "IE1234567AB"}, 23, "standard_rated"),
        ("US", {"type": "us_ein", "value": "12-3456789"}, 0, "not_collecting"),
    ],
)
def test_stripe_tax_follows_the_registrations_and_the_customers_vat_id(
    taxed: StripeBilling, country: str, tax_id: dict[str, str] | None, rate: int, reason: str
) -> None:
    quote = fresh(priced(days_ago(0), currency="eur", account=account(country, tax_id)))
    sent = bill(taxed, quote)
    assert sent.total_excluding_tax_minor == quote.first_invoice_total_minor
    assert sent.tax_minor == quote.first_invoice_total_minor * rate // 100
    assert sent.tax_reasons == [reason]


def test_a_stub_invoice_is_taxed_too(taxed: StripeBilling) -> None:
    quote = fresh(stub_deal(days_ago(0, avoid_first=True)))
    quote = quote.model_copy(update={"account": quote.account.model_copy(update={"tax_id": None})})
    sent = bill(taxed, quote)
    assert sent.total_excluding_tax_minor == quote.first_invoice_total_minor
    assert sent.tax_minor is not None and sent.tax_minor > 0
    assert sent.total_minor == quote.first_invoice_total_minor + sent.tax_minor


def test_without_tax_nothing_is_asked_of_stripe_tax(client: stripe.StripeClient) -> None:
    quote = fresh(priced(days_ago(0), account=account("GB")))
    sent = bill(StripeBilling(client), quote)
    assert sent.total_minor == quote.first_invoice_total_minor
    assert sent.tax_minor == 0
    assert client.v1.invoices.retrieve(sent.invoice_id).automatic_tax.enabled is False


def test_a_services_order_is_one_invoice_and_no_subscription(
    client: stripe.StripeClient,
) -> None:
    quote = fresh(
        priced(days_ago(0), term_months=12, lines=[{"sku": "IMPL-SERVICES", "quantity": 2}])
    )
    assert len(quote.invoices) == 1
    billing = StripeBilling(client)
    sent = bill(billing, quote)
    again = bill(billing, quote)  # a retried deal finds the invoice; nothing is billed twice
    assert again.invoice_id == sent.invoice_id
    assert sent.total_minor == 1000000
    invoice = client.v1.invoices.retrieve(sent.invoice_id)
    customer = str(invoice.customer)
    assert invoice.status == "open"
    assert [i.id for i in client.v1.invoices.list(params={"customer": customer}).data] == [
        sent.invoice_id
    ]
    assert client.v1.subscriptions.list(params={"customer": customer}).data == []
    assert client.v1.subscription_schedules.list(params={"customer": customer}).data == []


def test_the_reviewer_is_shown_the_tax_stripe_would_add_before_anything_is_billed(
    taxed: StripeBilling, client: stripe.StripeClient
) -> None:
    quote = fresh(priced(days_ago(0), account=account("GB")))
    env = ActivityEnvironment()
    deal_id = deal_id_for(quote.opportunity_id)
    customer = env.run(
        taxed.create_billing_customer, CreateCustomerInput(deal_id=deal_id, priced=quote)
    )
    preview = env.run(
        taxed.preview_invoice_tax,
        PreviewTaxInput(deal_id=deal_id, customer_id=customer.customer_id, priced=quote),
    )
    net = quote.first_invoice_total_minor
    assert (preview.total_excluding_tax_minor, preview.tax_minor) == (net, net // 5)
    assert preview.total_minor == net + net // 5
    assert client.v1.invoices.list(params={"customer": customer.customer_id}).data == []
