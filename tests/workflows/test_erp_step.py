"""The ERP step: a deal whose input names an ERP records its billed invoice there between
invoice_sent and provisioned; a deal without one never calls it."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from qtc.amendments import amendment_deal_quote, price_amendment
from qtc.deal import (
    SIGNAL_APPROVE_INVOICE,
    SIGNAL_RESUME,
    UPDATE_CORRECT_ACCOUNT,
    AccountCorrection,
    AmendmentTerms,
    DealStatus,
    DecisionResult,
    InvoiceReview,
    Resume,
    deal_id_for,
)
from qtc.errors import INVOICE_MISMATCH, VENDOR_INVALID_REQUEST
from qtc.models import PricedQuote
from qtc.ports import (
    ACT_CREATE_BILLING_CUSTOMER,
    ACT_CREATE_SUBSCRIPTION,
    ACT_MARK_CLOSED_WON,
    ACT_PROVISION_PRODUCT,
    ACT_SEND_CONTRACT,
    ACT_SEND_FIRST_INVOICE,
    ACT_SYNC_ERP_INVOICE,
    ACT_WRITE_BACK_BILLING_IDS,
)
from qtc.pricing import reprice_for_signature
from tests.workflows.support import (
    FakeVendors,
    new_opportunity_id,
    priced_quote,
    start_deal,
    wait_for_stage,
)
from tests.workflows.test_amendment_and_services import CATALOG
from tests.workflows.test_deal_workflow import sign, stages
from workflows.deal import PATCH_ERP_SYNC, DealWorkflow, workflow_id_for

QuoteFactory = Callable[..., PricedQuote]

LOOP_WITH_ERP = [
    ACT_SEND_CONTRACT,
    ACT_MARK_CLOSED_WON,
    ACT_CREATE_BILLING_CUSTOMER,
    ACT_CREATE_SUBSCRIPTION,
    ACT_SEND_FIRST_INVOICE,
    ACT_SYNC_ERP_INVOICE,
    ACT_PROVISION_PRODUCT,
    ACT_WRITE_BACK_BILLING_IDS,
]


async def patch_markers(handle: WorkflowHandle[DealWorkflow, DealStatus]) -> list[str]:
    """The patch ids the deal recorded (each marker's ``id``)."""
    history = await handle.fetch_history()
    return [
        json.loads(attributes.details["patch-data"].payloads[0].data)["id"]
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
        for attributes in [event.marker_recorded_event_attributes]
        if attributes.marker_name == "core_patch"
    ]


async def test_a_deal_with_an_erp_records_the_billed_invoice_before_provisioning(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors, quote: QuoteFactory, now: datetime
) -> None:
    priced = quote()
    handle = await start_deal(env.client, worker.task_queue, priced, erp="netsuite")
    await sign(handle, now)
    status: DealStatus = await handle.result()

    assert fakes.names() == LOOP_WITH_ERP
    deal_id = workflow_id_for(priced.opportunity_id)
    redated = reprice_for_signature(priced, now)
    [synced] = fakes.inputs(ACT_SYNC_ERP_INVOICE)
    assert (synced.deal_id, synced.billing_customer_id) == (deal_id, f"cus_{deal_id}")
    assert (synced.billing_invoice_id, synced.billing_invoice_number) == (
        f"in_{deal_id}",
        "ACME-0001",
    )
    assert synced.invoice == redated.invoices[0]
    assert synced.billed_total_minor == redated.first_invoice_total_minor
    assert synced.priced == redated
    assert stages(status)[-4:] == ["invoice_sent", "erp_synced", "provisioned", "completed"]
    assert status.stage_history[-3].note == "netsuite invoice INV00001"
    assert (status.erp, status.erp_customer_id, status.erp_invoice_id) == (
        "netsuite",
        f"erp-cus-{deal_id}",
        f"erp-in-{deal_id}",
    )
    assert PATCH_ERP_SYNC in await patch_markers(handle)


async def test_a_deal_without_an_erp_has_no_erp_step_and_records_no_erp_marker(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors, quote: QuoteFactory, now: datetime
) -> None:
    handle = await start_deal(env.client, worker.task_queue, quote())
    await sign(handle, now)
    status: DealStatus = await handle.result()

    assert ACT_SYNC_ERP_INVOICE not in fakes.names()
    assert "erp_synced" not in stages(status)
    assert status.erp is None and status.erp_invoice_id is None
    assert PATCH_ERP_SYNC not in await patch_markers(handle)


async def test_an_erp_mismatch_parks_the_deal_and_a_resume_retries_only_the_erp_step(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors, quote: QuoteFactory, now: datetime
) -> None:
    fakes.failures[ACT_SYNC_ERP_INVOICE] = [
        ApplicationError(
            "NetSuite invoice 1001 differs from billing invoice: total: billed 69800.00, "
            "NetSuite 70300.00",
            {"differences": [{"field": "total"}]},
            type=INVOICE_MISMATCH,
            non_retryable=True,
        )
    ]
    handle = await start_deal(env.client, worker.task_queue, quote(), erp="netsuite")
    await sign(handle, now)
    parked = await wait_for_stage(handle, "needs_attention")

    assert parked.last_error is not None
    assert (parked.last_error.step, parked.last_error.type) == (
        ACT_SYNC_ERP_INVOICE,
        INVOICE_MISMATCH,
    )
    assert "total" in parked.last_error.message
    assert ACT_PROVISION_PRODUCT not in fakes.names()

    await handle.signal(SIGNAL_RESUME, Resume(by="oscar", note="tax code fixed in NetSuite"))
    status: DealStatus = await handle.result()

    assert status.stage == "completed"
    assert fakes.names() == [*LOOP_WITH_ERP[:6], ACT_SYNC_ERP_INVOICE, *LOOP_WITH_ERP[6:]]
    assert stages(status)[-6:] == [
        "invoice_sent",
        "needs_attention",
        "invoice_sent",
        "erp_synced",
        "provisioned",
        "completed",
    ]


async def test_a_phase_2_deal_records_the_invoice_in_the_erp_after_the_review(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors, quote: QuoteFactory, now: datetime
) -> None:
    handle = await start_deal(env.client, worker.task_queue, quote(), phase=2, erp="netsuite")
    await sign(handle, now)
    await wait_for_stage(handle, "awaiting_invoice_review")
    await handle.signal(SIGNAL_APPROVE_INVOICE, InvoiceReview(reviewer="fiona"))
    status: DealStatus = await handle.result()

    assert fakes.names() == LOOP_WITH_ERP
    assert "erp_synced" in stages(status)


async def test_a_customer_netsuite_refuses_is_corrected_and_the_erp_step_retried_with_it(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors, quote: QuoteFactory, now: datetime
) -> None:
    fakes.failures[ACT_SYNC_ERP_INVOICE] = [
        ApplicationError(
            "NetSuite answered 400 to the upsert of customer qtc-cus_1: Enter a valid e-mail "
            "address. (field email)",
            {"vendor": "NetSuite", "status": 400, "field": "/account/billing_email"},
            type=VENDOR_INVALID_REQUEST,
            non_retryable=True,
        )
    ]
    priced = quote()
    handle = await start_deal(env.client, worker.task_queue, priced, erp="netsuite")
    await sign(handle, now)
    parked = await wait_for_stage(handle, "needs_attention")

    assert parked.last_error is not None
    assert (parked.last_error.system, parked.last_error.field) == ("erp", "/account/billing_email")
    assert parked.last_error.action is not None and "qtc deal correct" in parked.last_error.action

    fixed = priced.account.model_copy(update={"billing_email": "billing@acme.example"})
    await handle.execute_update(
        UPDATE_CORRECT_ACCOUNT,
        AccountCorrection(by="oscar", reason="AP mailbox from the customer", account=fixed),
        result_type=DecisionResult,
    )
    await handle.signal(SIGNAL_RESUME, Resume(by="oscar"))
    done: DealStatus = await handle.result()

    assert done.stage == "completed"
    first, retried = fakes.inputs(ACT_SYNC_ERP_INVOICE)
    assert first.priced.account.billing_email == "ap@acme.example"
    assert retried.priced.account.billing_email == "billing@acme.example"


async def test_a_netsuite_mismatch_tells_the_operator_to_fix_it_in_netsuite(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors, quote: QuoteFactory, now: datetime
) -> None:
    fakes.failures[ACT_SYNC_ERP_INVOICE] = [
        ApplicationError(
            "NetSuite invoice 1001 differs from billing invoice in_1: total: billed 69800.00, "
            "NetSuite 70300.00",
            {"vendor": "NetSuite", "invoice_id": "1001"},
            type=INVOICE_MISMATCH,
            non_retryable=True,
        )
    ]
    handle = await start_deal(env.client, worker.task_queue, quote(), erp="netsuite")
    await sign(handle, now)
    parked = await wait_for_stage(handle, "needs_attention")

    assert parked.last_error is not None
    assert parked.last_error.action is not None
    assert parked.last_error.action.startswith("NetSuite's invoice differs from the billed invoice")
    assert "fix it in NetSuite, then `qtc deal resume" in parked.last_error.action


async def signed_and_completed(
    handle: WorkflowHandle[DealWorkflow, DealStatus], at: datetime
) -> DealStatus:
    """Sign and wait for completion by polling the status: waiting on the result would let the
    shared time-skipping server jump to other tests' timers, years ahead of the dates here."""
    await sign(handle, at)
    return await wait_for_stage(handle, "completed")


async def test_an_amendment_records_its_own_invoice_on_the_same_erp_customer(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors
) -> None:
    now = await env.get_current_time()
    original_quote = priced_quote(
        opportunity_id=new_opportunity_id(), priced_at=now, valid_until=now.date()
    )
    original_handle = await start_deal(
        env.client, worker.task_queue, original_quote, erp="netsuite"
    )
    original = await signed_and_completed(original_handle, now)
    assert original.priced_quote is not None and original.billing_customer_id is not None
    original_id = deal_id_for(original_quote.opportunity_id)
    later = now + timedelta(days=100)
    amendment = price_amendment(
        {
            "quote_id": "Q-A1",
            "opportunity_id": new_opportunity_id(),
            "amends": original_id,
            "signer": {"name": "Jane Doe", "email": "jane@acme.example"},
            # Relative to the test server's clock, which earlier tests of the session moved on.
            "valid_until": (later + timedelta(days=30)).date().isoformat(),
            "lines": [{"sku": "PLATFORM-PRO", "quantity": 10}],
        },
        original.priced_quote,
        CATALOG,
        later - timedelta(days=2),
    )
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
        erp="netsuite",
    )
    status = await signed_and_completed(handle, later)

    [synced] = fakes.inputs(ACT_SYNC_ERP_INVOICE)
    assert synced.billing_customer_id == original.billing_customer_id
    assert synced.invoice.date == later.date()
    assert [line.kind for line in synced.invoice.lines] == ["proration"]
    line = synced.invoice.lines[0]
    assert (line.period_start, line.quantity) == (later.date(), 10)
    assert "erp_synced" in stages(status)
    assert status.stage == "completed"
