"""The deal workflow for an amendment (bills the original's customer and subscription) and for a
services order (one invoice, no subscription), with fake vendors on the time-skipping server."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from qtc.amendments import amendment_deal_quote, price_amendment
from qtc.catalog import load_catalog
from qtc.deal import (
    SIGNAL_SIGNATURE_COMPLETED,
    AmendmentTerms,
    DealInput,
    DealStatus,
    deal_id_for,
)
from qtc.models import PricedLine
from qtc.ports import (
    ACT_AMEND_SUBSCRIPTION,
    ACT_CREATE_BILLING_CUSTOMER,
    ACT_MARK_CLOSED_WON,
    ACT_PREVIEW_INVOICE_TAX,
    ACT_PROVISION_PRODUCT,
    ACT_SEND_AMENDMENT_INVOICE,
    ACT_SEND_CONTRACT,
    ACT_SEND_FIRST_INVOICE,
    ACT_WRITE_BACK_BILLING_IDS,
)
from qtc.pricing import reprice_for_signature
from tests.unit.builders import REPO_ROOT
from tests.workflows.support import (
    FakeVendors,
    new_opportunity_id,
    priced_quote,
    signature,
    start_deal,
    wait_for_stage,
)
from workflows.deal import DealWorkflow

CATALOG = load_catalog(REPO_ROOT / "catalog.toml")


async def signed_and_done(handle: object, at: object) -> DealStatus:
    status = await wait_for_stage(handle, "awaiting_signature")  # type: ignore[arg-type]
    assert status.envelope_id is not None
    await handle.signal(  # type: ignore[attr-defined]
        SIGNAL_SIGNATURE_COMPLETED,
        signature(status.envelope_id, at),  # type: ignore[arg-type]
    )
    result: DealStatus = await handle.result()  # type: ignore[attr-defined]
    return result


async def test_an_amendment_bills_the_original_customer_and_changes_its_subscription(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors
) -> None:
    now = await env.get_current_time()
    original_quote = priced_quote(
        opportunity_id=new_opportunity_id(), priced_at=now, valid_until=now.date()
    )
    original_handle = await start_deal(env.client, worker.task_queue, original_quote)
    original = await signed_and_done(original_handle, now)
    assert original.priced_quote is not None
    original_id = deal_id_for(original_quote.opportunity_id)

    # Signed 100 days into the term (the signature's time is what dates an amendment).
    later = now + timedelta(days=100)
    amendment = price_amendment(
        {
            "quote_id": "Q-A1",
            "opportunity_id": new_opportunity_id(),
            "amends": original_id,
            "signer": {"name": "Jane Doe", "email": "jane@acme.example"},
            "valid_until": "2099-12-31",
            "lines": [{"sku": "PLATFORM-PRO", "quantity": 10}],
        },
        original.priced_quote,
        CATALOG,
        later - timedelta(days=2),  # priced two days before it is signed
    )
    assert original.billing_customer_id is not None
    terms = AmendmentTerms(
        original_deal_id=original_id,
        original=original.priced_quote,
        amendment=amendment,
        billing_customer_id=original.billing_customer_id,
        billing_subscription_id=original.billing_subscription_id,
        billing_schedule_id=original.billing_schedule_id,
    )
    fakes.calls.clear()
    handle = await start_deal(
        env.client,
        worker.task_queue,
        amendment_deal_quote(original.priced_quote, amendment),
        amends=terms,
    )
    status = await signed_and_done(handle, later)

    assert fakes.names() == [
        ACT_SEND_CONTRACT,
        ACT_MARK_CLOSED_WON,
        ACT_AMEND_SUBSCRIPTION,
        ACT_SEND_AMENDMENT_INVOICE,
        ACT_PROVISION_PRODUCT,
        ACT_WRITE_BACK_BILLING_IDS,
    ]
    assert ACT_CREATE_BILLING_CUSTOMER not in fakes.names()
    [amend] = fakes.inputs(ACT_AMEND_SUBSCRIPTION)
    dated = amend.amendment
    assert dated.effective_date == later.date()  # re-dated to the signature, not the pricing
    assert (amend.customer_id, amend.subscription_id) == (
        original.billing_customer_id,
        original.billing_subscription_id,
    )
    # 12-month annual term: the current period is the whole first year.
    days = (original.priced_quote.term_end - original.priced_quote.term_start).days
    left = (original.priced_quote.term_end - later.date()).days
    expected_unit = int(
        (Decimal(129600) * left / days).quantize(Decimal(1), rounding="ROUND_HALF_UP")
    )
    [item] = dated.invoices[0].lines
    assert (item.kind, item.quantity, item.unit_amount_minor) == ("proration", 10, expected_unit)
    [invoice] = fakes.inputs(ACT_SEND_AMENDMENT_INVOICE)
    assert invoice.priced.invoices[0] == dated.invoices[0]
    [provision] = fakes.inputs(ACT_PROVISION_PRODUCT)
    assert provision.tenant_id == original.billing_customer_id
    assert provision.priced.lines[0].features["seats"] == 60
    [closed_won] = fakes.inputs(ACT_MARK_CLOSED_WON)
    assert closed_won.opportunity_id == amendment.opportunity_id

    assert status.stage == "completed"
    assert status.amends == original_id
    assert status.priced_amendment == dated
    assert status.billing_customer_id == original.billing_customer_id
    assert status.invoice_preview == dated.invoices[0]


async def test_a_services_order_is_invoiced_without_a_subscription(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors
) -> None:
    now = await env.get_current_time()
    quote = priced_quote(opportunity_id=new_opportunity_id(), priced_at=now, valid_until=now.date())
    services = reprice_for_signature(
        quote.model_copy(
            update={
                "lines": [
                    PricedLine(
                        sku="IMPL-SERVICES",
                        name="Implementation services",
                        kind="one_time",
                        quantity=2,
                        discount_percent=Decimal("0"),
                        list_price=Decimal("5000.00"),
                        features={"onboarding": True},
                    )
                ]
            }
        ),
        now,
    )
    assert len(services.invoices) == 1
    handle = await start_deal(env.client, worker.task_queue, services)
    status = await signed_and_done(handle, now)

    assert "create_subscription" not in fakes.names()
    [invoice] = fakes.inputs(ACT_SEND_FIRST_INVOICE)
    assert invoice.subscription_id is None
    assert status.stage == "completed"
    assert "subscription_created" not in [entry.stage for entry in status.stage_history]
    assert status.billing_subscription_id is None
    assert status.invoice_total_minor == 1000000


async def test_with_tax_on_the_finance_reviewer_sees_the_tax_billing_would_add(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors
) -> None:
    now = await env.get_current_time()
    quote = priced_quote(opportunity_id=new_opportunity_id(), priced_at=now, valid_until=now.date())
    deal_input = DealInput(priced=quote, phase=2, started_by="sam", tax=True)
    handle = await env.client.start_workflow(
        DealWorkflow.run,
        deal_input,
        id=deal_id_for(quote.opportunity_id),
        task_queue=worker.task_queue,
    )
    status = await wait_for_stage(handle, "awaiting_signature")
    assert status.envelope_id is not None
    await handle.signal(SIGNAL_SIGNATURE_COMPLETED, signature(status.envelope_id, now))
    review = await wait_for_stage(handle, "awaiting_invoice_review")
    assert review.invoice_preview is not None
    net = review.invoice_preview.total_minor
    assert (review.invoice_preview_tax_minor, review.invoice_preview_total_minor) == (
        net // 5,
        net + net // 5,
    )
    [asked] = fakes.inputs(ACT_PREVIEW_INVOICE_TAX)
    assert asked.customer_id == review.billing_customer_id
