"""An amendment in Stripe: the original's schedule changes from the end of the current period, the
amendment invoice (proration and one-time lines) goes to the same customer, and the next period's
invoice carries the new quantity. Real stripe SDK, emulator with a clock the test moves."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import stripe
from temporalio.testing import ActivityEnvironment

from integrations.stripe.activities import StripeBilling
from integrations.stripe.client import build_stripe_client
from qtc.amendments import amendment_deal_quote, price_amendment
from qtc.deal import deal_id_for
from qtc.errors import VENDOR_CONFLICT
from qtc.models import PricedQuote
from qtc.ports import (
    AmendSubscriptionInput,
    CreateCustomerInput,
    CreateSubscriptionInput,
    SendAmendmentInvoiceInput,
    SendInvoiceInput,
)
from runtime.settings import Settings
from sandbox.stripe.testing import serve_stripe_emulator
from tests.activities.billing_deals import CATALOG, priced


@dataclass
class Clock:
    now: float

    def __call__(self) -> float:
        return self.now

    def to(self, moment: datetime) -> None:
        self.now = moment.timestamp()


SIGNED = datetime(2027, 1, 15, 9, 0, tzinfo=UTC)
AMENDED = datetime(2027, 3, 1, 10, 0, tzinfo=UTC)


@dataclass
class Billed:
    billing: StripeBilling
    client: stripe.StripeClient
    clock: Clock
    original: PricedQuote
    customer_id: str
    subscription_id: str
    schedule_id: str | None


@pytest.fixture
def billed() -> Iterator[Billed]:
    clock = Clock(SIGNED.timestamp())
    with serve_stripe_emulator(clock=clock) as url:
        client = build_stripe_client(Settings(stripe_api_base=url))
        billing = StripeBilling(client, clock)
        original = priced(SIGNED, term_months=12, billing_frequency="monthly")
        env = ActivityEnvironment()
        deal_id = deal_id_for(original.opportunity_id)
        customer = env.run(
            billing.create_billing_customer, CreateCustomerInput(deal_id=deal_id, priced=original)
        )
        created = env.run(
            billing.create_subscription,
            CreateSubscriptionInput(
                deal_id=deal_id, customer_id=customer.customer_id, priced=original
            ),
        )
        env.run(
            billing.send_first_invoice,
            SendInvoiceInput(
                deal_id=deal_id,
                customer_id=customer.customer_id,
                subscription_id=created.subscription_id,
                priced=original,
            ),
        )
        yield Billed(
            billing,
            client,
            clock,
            original,
            customer.customer_id,
            created.subscription_id,
            created.schedule_id,
        )


def amend(
    billed: Billed, lines: list[dict[str, object]], at: datetime = AMENDED
) -> tuple[str, PricedQuote]:
    amendment = price_amendment(
        {
            "quote_id": "Q-1001-A1",
            "opportunity_id": "006A00000000001AAA",
            "amends": deal_id_for(billed.original.opportunity_id),
            "signer": {"name": "Jane Doe", "email": "jane@acme.example"},
            "valid_until": "2099-01-01",
            "lines": lines,
        },
        billed.original,
        CATALOG,
        at,
    )
    billed.clock.to(at)
    env = ActivityEnvironment()
    deal_id = deal_id_for(amendment.opportunity_id)
    original_deal = deal_id_for(billed.original.opportunity_id)
    amend_input = AmendSubscriptionInput(
        deal_id=deal_id,
        original_deal_id=original_deal,
        customer_id=billed.customer_id,
        subscription_id=billed.subscription_id,
        schedule_id=billed.schedule_id,
        original=billed.original,
        amendment=amendment,
    )
    changed = env.run(billed.billing.amend_subscription, amend_input)
    again = env.run(billed.billing.amend_subscription, amend_input)  # a retry changes nothing
    assert again == changed
    deal_quote = amendment_deal_quote(billed.original, amendment)
    sent = env.run(
        billed.billing.send_amendment_invoice,
        SendAmendmentInvoiceInput(
            deal_id=deal_id,
            original_deal_id=original_deal,
            customer_id=billed.customer_id,
            priced=deal_quote,
        ),
    )
    resent = env.run(
        billed.billing.send_amendment_invoice,
        SendAmendmentInvoiceInput(
            deal_id=deal_id,
            original_deal_id=original_deal,
            customer_id=billed.customer_id,
            priced=deal_quote,
        ),
    )
    assert resent.invoice_id == sent.invoice_id
    return sent.invoice_id, deal_quote


def test_ten_more_seats_mid_period_bill_a_proration_now_and_the_new_quantity_next_period(
    billed: Billed,
) -> None:
    invoice_id, deal_quote = amend(billed, [{"sku": "PLATFORM-PRO", "quantity": 10}])
    client = billed.client
    invoice = client.v1.invoices.retrieve(invoice_id)
    # 108.00 a seat for 15 February to 15 March; on 1 March 14 of its 28 days are left.
    assert str(invoice.customer) == billed.customer_id
    assert invoice.status == "open"
    assert invoice.total == deal_quote.invoices[0].total_minor == 10 * 5400
    [line] = invoice.lines.data
    assert (line.quantity, line.amount) == (10, 54000)
    # Stripe's preview of the upcoming invoice already shows the new quantity...
    upcoming = client.v1.invoices.create_preview(params={"subscription": billed.subscription_id})
    assert [(li.quantity, li.amount) for li in upcoming.lines.data] == [(60, 60 * 10800)]
    # ...and the next period is billed in advance on 15 March with 60 seats.
    billed.clock.to(datetime(2027, 3, 15, 1, 0, tzinfo=UTC))
    latest = client.v1.invoices.list(params={"subscription": billed.subscription_id}).data[0]
    assert latest.period_start == int(datetime(2027, 2, 15, tzinfo=UTC).timestamp())
    assert [(li.quantity, li.amount) for li in latest.lines.data] == [(60, 60 * 10800)]
    assert len(client.v1.customers.list().data) == 1


def test_one_time_lines_alone_leave_the_subscription_as_it_was(billed: Billed) -> None:
    invoice_id, _ = amend(billed, [{"sku": "IMPL-SERVICES", "quantity": 1}])
    invoice = billed.client.v1.invoices.retrieve(invoice_id)
    assert invoice.total == 500000
    assert billed.schedule_id is not None
    schedule = billed.client.v1.subscription_schedules.retrieve(billed.schedule_id)
    assert "last_amendment" not in (schedule.metadata or {})


def test_a_schedule_changed_by_someone_else_is_not_overwritten(billed: Billed) -> None:
    amend(billed, [{"sku": "PLATFORM-PRO", "quantity": 10}])
    # A second amendment priced against the original as signed would undo the first one.
    with pytest.raises(Exception) as caught:
        amend(billed, [{"sku": "PLATFORM-PRO", "quantity": 5}])
    assert getattr(caught.value, "type", None) == VENDOR_CONFLICT


def test_an_amendment_in_the_last_period_bills_its_proration_and_leaves_the_schedule(
    billed: Billed,
) -> None:
    last_period = datetime(2027, 12, 20, 10, 0, tzinfo=UTC)
    invoice_id, deal_quote = amend(billed, [{"sku": "PLATFORM-PRO", "quantity": 10}], last_period)
    assert deal_quote.invoices[0].period_end.isoformat() == "2028-01-15"
    assert len(deal_quote.invoices) == 1
    assert (
        billed.client.v1.invoices.retrieve(invoice_id).total == deal_quote.invoices[0].total_minor
    )
