"""The billing activities against real Stripe test mode, for the documented 36-month deal."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pydantic import SecretStr

from integrations.stripe.activities import StripeBilling
from integrations.stripe.client import build_stripe_client
from qtc.cpq import price_quote
from qtc.ports import CreateCustomerInput, CreateSubscriptionInput, SendInvoiceInput
from tests.activities.billing_deals import CATALOG, quote
from tests.contract.conftest import production_settings, require_env


def test_real_stripe_bills_the_design_example_exactly_once() -> None:
    key = require_env("QTC_CONTRACT_STRIPE_KEY")["QTC_CONTRACT_STRIPE_KEY"]
    assert key.startswith("sk_test_"), "contract tests run against Stripe test mode only"
    client = build_stripe_client(production_settings(stripe_api_key=SecretStr(key)))
    billing = StripeBilling(client)
    opportunity = f"006CT{uuid.uuid4().hex[:12].upper()}"
    priced = price_quote(quote(opportunity_id=opportunity), CATALOG, datetime.now(UTC))
    deal_id = f"deal-{opportunity}"

    customer = billing.create_billing_customer(CreateCustomerInput(deal_id=deal_id, priced=priced))
    again = billing.create_billing_customer(CreateCustomerInput(deal_id=deal_id, priced=priced))
    assert again.customer_id == customer.customer_id

    created = billing.create_subscription(
        CreateSubscriptionInput(deal_id=deal_id, customer_id=customer.customer_id, priced=priced)
    )
    sent = billing.send_first_invoice(
        SendInvoiceInput(
            deal_id=deal_id,
            customer_id=customer.customer_id,
            subscription_id=created.subscription_id,
            priced=priced,
        )
    )
    assert sent.total_minor == priced.invoices[0].total_minor
    assert sent.invoice_url
