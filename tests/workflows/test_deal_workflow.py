"""DealWorkflow on the time-skipping server, every outside system replaced by a recording fake."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.common import SearchAttributeKey
from temporalio.converter import decode_typed_search_attributes
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from qtc.deal import (
    SIGNAL_APPROVE_INVOICE,
    SIGNAL_APPROVE_QUOTE,
    SIGNAL_MARK_LOST,
    SIGNAL_REJECT_INVOICE,
    SIGNAL_REJECT_QUOTE,
    SIGNAL_RESUME,
    SIGNAL_SIGNATURE_COMPLETED,
    DealStatus,
    InvoiceReview,
    MarkLost,
    QuoteDecision,
    Resume,
)
from qtc.errors import VENDOR_INVALID_REQUEST, VENDOR_UNAVAILABLE
from qtc.models import PricedQuote
from qtc.ports import (
    ACT_CREATE_BILLING_CUSTOMER,
    ACT_CREATE_SUBSCRIPTION,
    ACT_MARK_CLOSED_WON,
    ACT_PROVISION_PRODUCT,
    ACT_SEND_CONTRACT,
    ACT_SEND_FIRST_INVOICE,
    ACT_VOID_CONTRACT,
    ACT_WRITE_BACK_BILLING_IDS,
)
from qtc.pricing import reprice_for_signature
from tests.workflows.support import (
    FakeVendors,
    signature,
    start_deal,
    status_of,
    wait_for_call,
    wait_for_stage,
)
from workflows.deal import (
    ACTIVITY_RETRY_POLICY,
    ARR_KEY,
    CUSTOMER_KEY,
    FIRST_ATTEMPTS_POLICY,
    PATCH_LOCAL_STEPS_AFTER_SIGNATURE,
    PATCH_VISIBLE_RETRIES,
    PHASE_KEY,
    STAGE_KEY,
    DealWorkflow,
    workflow_id_for,
)

CHANGE_VERSION_KEY = SearchAttributeKey.for_keyword_list("TemporalChangeVersion")

QuoteFactory = Callable[..., PricedQuote]

FULL_LOOP = [
    ACT_SEND_CONTRACT,
    ACT_MARK_CLOSED_WON,
    ACT_CREATE_BILLING_CUSTOMER,
    ACT_CREATE_SUBSCRIPTION,
    ACT_SEND_FIRST_INVOICE,
    ACT_PROVISION_PRODUCT,
    ACT_WRITE_BACK_BILLING_IDS,
]


def stages(status: DealStatus) -> list[str]:
    return [entry.stage for entry in status.stage_history]


def note_kinds(status: DealStatus) -> list[str]:
    return [note.kind for note in status.notes]


async def sign(handle: WorkflowHandle[DealWorkflow, DealStatus], at: datetime) -> None:
    status = await wait_for_stage(handle, "awaiting_signature")
    assert status.envelope_id is not None
    await handle.signal(SIGNAL_SIGNATURE_COMPLETED, signature(status.envelope_id, at))


def expired_right_after_end_of(valid_until: date, status: DealStatus) -> bool:
    """The quote expired when its last valid day ended (UTC), not a day early or late."""
    end_of_day = datetime.combine(valid_until + timedelta(days=1), time.min, tzinfo=UTC)
    return end_of_day <= status.stage_history[-1].at < end_of_day + timedelta(minutes=1)


async def result_of(handle: WorkflowHandle[DealWorkflow, DealStatus]) -> DealStatus:
    return await handle.result()


# --- the three rollout phases -----------------------------------------------------------------


async def test_phase_3_deal_runs_from_contract_to_provisioned_product_with_the_redated_quote(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors, quote: QuoteFactory, now: datetime
) -> None:
    priced = quote()
    handle = await start_deal(env.client, worker.task_queue, priced, phase=3)
    await sign(handle, now)
    status = await result_of(handle)

    assert fakes.names() == FULL_LOOP
    deal_id = workflow_id_for(priced.opportunity_id)
    redated = reprice_for_signature(priced, now)
    assert priced.start_date != now.date(), "the factory must date the quote before signature"

    [contract] = fakes.inputs(ACT_SEND_CONTRACT)
    assert contract.deal_id == deal_id and contract.priced == priced
    [closed_won] = fakes.inputs(ACT_MARK_CLOSED_WON)
    assert closed_won.close_date == now.date()
    assert closed_won.opportunity_id == priced.opportunity_id
    [customer] = fakes.inputs(ACT_CREATE_BILLING_CUSTOMER)
    assert customer.priced == redated
    [subscription] = fakes.inputs(ACT_CREATE_SUBSCRIPTION)
    assert subscription.customer_id == f"cus_{deal_id}"
    assert subscription.priced == redated
    assert subscription.priced.start_date == now.date()
    assert subscription.priced.invoices[0].date == now.date()
    [invoice] = fakes.inputs(ACT_SEND_FIRST_INVOICE)
    assert invoice.subscription_id == f"sub_{deal_id}" and invoice.priced == redated
    [provision] = fakes.inputs(ACT_PROVISION_PRODUCT)
    assert provision.tenant_id == f"cus_{deal_id}"
    [write_back] = fakes.inputs(ACT_WRITE_BACK_BILLING_IDS)
    assert (write_back.billing_customer_id, write_back.billing_subscription_id) == (
        f"cus_{deal_id}",
        f"sub_{deal_id}",
    )
    assert write_back.billing_invoice_id == f"in_{deal_id}"

    assert status.stage == "completed"
    assert stages(status) == [
        "contract_sent",
        "awaiting_signature",
        "signed",
        "billing_account_created",
        "subscription_created",
        "invoice_sent",
        "provisioned",
        "completed",
    ]
    assert status.envelope_id == f"env-{deal_id}"
    assert status.billing_customer_id == f"cus_{deal_id}"
    assert status.billing_subscription_id == f"sub_{deal_id}"
    assert status.billing_schedule_id == f"sub_sched_{deal_id}"
    assert status.billing_invoice_id == f"in_{deal_id}"
    assert status.invoice_number == "ACME-0001"
    assert status.invoice_preview == redated.invoices[0]
    assert status.start_date == now.date()
    assert status.invoice_sent_at is not None and status.invoice_sent_at >= now
    assert status.provisioned_features == {"PLATFORM-PRO": {"sso": True, "seats": 50}}
    assert status.signature is not None and status.signature.envelope_id == status.envelope_id
    assert status.last_error is None and status.notes == []


async def test_phase_2_deal_waits_for_the_finance_reviewer_before_billing_the_customer(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors, quote: QuoteFactory, now: datetime
) -> None:
    priced = quote()
    handle = await start_deal(env.client, worker.task_queue, priced, phase=2)
    await sign(handle, now)
    waiting = await wait_for_stage(handle, "awaiting_invoice_review")

    assert fakes.names() == FULL_LOOP[:3]
    assert waiting.invoice_preview == reprice_for_signature(priced, now).invoices[0]
    assert waiting.invoice_preview.date == now.date()
    assert waiting.billing_customer_id is not None

    review = InvoiceReview(reviewer="fiona.finance@sandbox.example", note="matches the contract")
    await handle.signal(SIGNAL_APPROVE_INVOICE, review)
    status = await result_of(handle)

    assert fakes.names() == FULL_LOOP
    assert status.stage == "completed"
    assert status.invoice_review == review
    assert stages(status) == [
        "contract_sent",
        "awaiting_signature",
        "signed",
        "billing_account_created",
        "awaiting_invoice_review",
        # Approved: off the reviewers' queue at once (a later reject is refused as such).
        "billing_account_created",
        "subscription_created",
        "invoice_sent",
        "provisioned",
        "completed",
    ]
    assert "invoice_approved" in note_kinds(status)


async def test_phase_1_deal_stops_after_closed_won_without_touching_billing(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors, quote: QuoteFactory, now: datetime
) -> None:
    priced = quote()
    handle = await start_deal(env.client, worker.task_queue, priced, phase=1)
    await sign(handle, now)
    status = await result_of(handle)

    assert fakes.names() == [ACT_SEND_CONTRACT, ACT_MARK_CLOSED_WON]
    assert status.stage == "completed"
    assert stages(status) == ["contract_sent", "awaiting_signature", "signed", "completed"]
    assert status.billing_customer_id is None
    assert status.phase == 1


# --- deal desk --------------------------------------------------------------------------------


async def test_quote_over_the_discount_limit_waits_for_deal_desk_approval_before_the_contract(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors, quote: QuoteFactory, now: datetime
) -> None:
    priced = quote(status="needs_approval")
    handle = await start_deal(env.client, worker.task_queue, priced, phase=1)
    await wait_for_stage(handle, "pending_approval")
    assert fakes.names() == []

    decision = QuoteDecision(by="dana.deskman@sandbox.example", note="strategic logo")
    await handle.signal(SIGNAL_APPROVE_QUOTE, decision)
    await sign(handle, now)
    status = await result_of(handle)

    assert fakes.names() == [ACT_SEND_CONTRACT, ACT_MARK_CLOSED_WON]
    assert status.quote_decision == decision
    assert stages(status) == [
        "pending_approval",
        "contract_sent",
        "awaiting_signature",
        "signed",
        "completed",
    ]


async def test_quote_rejected_by_deal_desk_never_sends_a_contract(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors, quote: QuoteFactory
) -> None:
    handle = await start_deal(env.client, worker.task_queue, quote(status="needs_approval"))
    await wait_for_stage(handle, "pending_approval")
    await handle.signal(SIGNAL_REJECT_QUOTE, QuoteDecision(by="dana", note="discount too deep"))
    status = await result_of(handle)

    assert status.stage == "quote_rejected"
    assert stages(status) == ["pending_approval", "quote_rejected"]
    assert fakes.names() == []
    assert status.stage_history[-1].note == "rejected by dana: discount too deep"


async def test_quote_waiting_for_approval_expires_at_the_end_of_its_valid_until_day(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors, quote: QuoteFactory, now: datetime
) -> None:
    valid_until = (now + timedelta(days=3)).date()
    handle = await start_deal(
        env.client, worker.task_queue, quote(status="needs_approval", valid_until=valid_until)
    )
    status = await result_of(handle)

    assert status.stage == "expired"
    assert expired_right_after_end_of(valid_until, status)
    assert fakes.names() == [], "no envelope was sent, so none is voided"


# --- expiry and loss --------------------------------------------------------------------------


async def test_unsigned_contract_is_voided_when_the_quote_expires_after_30_days(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors, quote: QuoteFactory, now: datetime
) -> None:
    valid_until = (now + timedelta(days=30)).date()
    priced = quote(valid_until=valid_until)
    handle = await start_deal(env.client, worker.task_queue, priced)
    await wait_for_stage(handle, "awaiting_signature")
    status = await result_of(handle)

    assert status.stage == "expired"
    assert stages(status) == ["contract_sent", "awaiting_signature", "expired"]
    assert expired_right_after_end_of(valid_until, status)
    assert fakes.names() == [ACT_SEND_CONTRACT, ACT_VOID_CONTRACT]
    [void] = fakes.inputs(ACT_VOID_CONTRACT)
    assert void.envelope_id == status.envelope_id
    assert "expired" in void.reason


async def test_a_contract_signed_before_expiry_whose_webhook_came_late_is_honoured(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors, quote: QuoteFactory, now: datetime
) -> None:
    valid_until = (now + timedelta(days=30)).date()
    # Signed an hour before the quote expired; the Connect event never reached us in time.
    fakes.signed_before_void = datetime.combine(valid_until, time(23, 0), tzinfo=UTC)
    handle = await start_deal(env.client, worker.task_queue, quote(valid_until=valid_until))
    status = await result_of(handle)

    assert status.stage == "completed"
    assert "signed_before_expiry" in note_kinds(status)
    assert status.signature is not None
    assert status.signature.completed_at == fakes.signed_before_void
    assert fakes.names()[:3] == [ACT_SEND_CONTRACT, ACT_VOID_CONTRACT, ACT_MARK_CLOSED_WON]
    [closed_won] = fakes.inputs(ACT_MARK_CLOSED_WON)
    assert closed_won.close_date == valid_until


async def test_a_contract_signed_after_expiry_does_not_revive_the_deal(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors, quote: QuoteFactory, now: datetime
) -> None:
    valid_until = (now + timedelta(days=30)).date()
    fakes.signed_before_void = datetime.combine(
        valid_until + timedelta(days=1), time(0, 5), tzinfo=UTC
    )
    handle = await start_deal(env.client, worker.task_queue, quote(valid_until=valid_until))
    status = await result_of(handle)

    assert status.stage == "expired"
    assert fakes.names() == [ACT_SEND_CONTRACT, ACT_VOID_CONTRACT]


async def test_mark_lost_once_closed_won_is_being_written_is_refused(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors, quote: QuoteFactory, now: datetime
) -> None:
    fakes.failures[ACT_MARK_CLOSED_WON] = [ApplicationError("CRM busy", type="VendorUnavailable")]
    handle = await start_deal(env.client, worker.task_queue, quote(), phase=1)
    await sign(handle, now)
    while ACT_MARK_CLOSED_WON not in fakes.names():
        await asyncio.sleep(0.05)
    await handle.signal(SIGNAL_MARK_LOST, MarkLost(by="sam", reason="changed their mind"))
    status = await result_of(handle)

    assert status.stage == "completed"
    assert "lost_refused" in note_kinds(status)


async def test_mark_lost_right_behind_the_signature_is_refused_before_any_step_runs(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors, quote: QuoteFactory, now: datetime
) -> None:
    # Both signals usually land in one activation, signature first: the steps after it run as
    # local activities, so the signature alone must close the deal to mark_lost.
    handle = await start_deal(env.client, worker.task_queue, quote(), phase=3)
    await sign(handle, now)
    await handle.signal(SIGNAL_MARK_LOST, MarkLost(by="sam", reason="too late"))
    status = await result_of(handle)

    assert status.stage == "completed"
    assert "lost_refused" in note_kinds(status)
    assert ACT_VOID_CONTRACT not in fakes.names()


async def test_deal_marked_lost_before_billing_voids_the_envelope(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors, quote: QuoteFactory
) -> None:
    handle = await start_deal(env.client, worker.task_queue, quote())
    waiting = await wait_for_stage(handle, "awaiting_signature")
    await handle.signal(SIGNAL_MARK_LOST, MarkLost(by="sam", reason="went with a competitor"))
    status = await result_of(handle)

    assert status.stage == "lost"
    assert fakes.names() == [ACT_SEND_CONTRACT, ACT_VOID_CONTRACT]
    [void] = fakes.inputs(ACT_VOID_CONTRACT)
    assert void.envelope_id == waiting.envelope_id
    assert void.reason == "marked lost by sam: went with a competitor"


async def test_deal_marked_lost_while_awaiting_approval_ends_without_a_contract(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors, quote: QuoteFactory
) -> None:
    handle = await start_deal(env.client, worker.task_queue, quote(status="needs_approval"))
    await wait_for_stage(handle, "pending_approval")
    await handle.signal(SIGNAL_MARK_LOST, MarkLost(by="sam"))
    status = await result_of(handle)

    assert stages(status) == ["pending_approval", "lost"]
    assert fakes.names() == []


async def test_mark_lost_after_billing_started_is_refused_and_the_deal_completes(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors, quote: QuoteFactory, now: datetime
) -> None:
    handle = await start_deal(env.client, worker.task_queue, quote(), phase=2)
    await sign(handle, now)
    await wait_for_stage(handle, "awaiting_invoice_review")
    await handle.signal(SIGNAL_MARK_LOST, MarkLost(by="sam", reason="changed their mind"))
    await handle.signal(SIGNAL_APPROVE_INVOICE, InvoiceReview(reviewer="fiona"))
    status = await result_of(handle)

    assert status.stage == "completed"
    assert ACT_VOID_CONTRACT not in fakes.names()
    assert "lost_refused" in note_kinds(status)


# --- finance review ---------------------------------------------------------------------------


async def test_finance_rejecting_the_first_invoice_ends_the_deal_before_any_subscription(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors, quote: QuoteFactory, now: datetime
) -> None:
    handle = await start_deal(env.client, worker.task_queue, quote(), phase=2)
    await sign(handle, now)
    await wait_for_stage(handle, "awaiting_invoice_review")
    review = InvoiceReview(reviewer="fiona", note="wrong billing entity")
    await handle.signal(SIGNAL_REJECT_INVOICE, review)
    status = await result_of(handle)

    assert status.stage == "review_rejected"
    assert status.invoice_review == review
    assert fakes.names() == FULL_LOOP[:3]


async def test_reviewer_is_reminded_while_the_first_invoice_waits_for_review(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors, quote: QuoteFactory, now: datetime
) -> None:
    handle = await start_deal(
        env.client, worker.task_queue, quote(), phase=2, review_reminder_hours=24
    )
    await sign(handle, now)
    await wait_for_stage(handle, "awaiting_invoice_review")
    await env.sleep(timedelta(hours=49))
    waiting = await status_of(handle)
    assert note_kinds(waiting).count("review_reminder") == 2
    assert waiting.stage == "awaiting_invoice_review"

    await handle.signal(SIGNAL_APPROVE_INVOICE, InvoiceReview(reviewer="fiona"))
    assert (await result_of(handle)).stage == "completed"


# --- early and duplicate signatures -----------------------------------------------------------


async def test_signature_delivered_with_signal_with_start_is_kept(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors, quote: QuoteFactory, now: datetime
) -> None:
    priced = quote()
    envelope_id = FakeVendors.envelope_id_for(workflow_id_for(priced.opportunity_id))
    handle = await start_deal(
        env.client,
        worker.task_queue,
        priced,
        phase=1,
        start_signal=SIGNAL_SIGNATURE_COMPLETED,
        start_signal_arg=signature(envelope_id, now),
    )
    status = await result_of(handle)

    assert status.stage == "completed"
    assert status.signature is not None and status.signature.envelope_id == envelope_id
    assert fakes.names() == [ACT_SEND_CONTRACT, ACT_MARK_CLOSED_WON]


async def test_signature_arriving_before_send_contract_returns_is_kept(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors, quote: QuoteFactory, now: datetime
) -> None:
    fakes.hold_send_contract = asyncio.Event()
    priced = quote()
    envelope_id = FakeVendors.envelope_id_for(workflow_id_for(priced.opportunity_id))
    handle = await start_deal(env.client, worker.task_queue, priced, phase=1)
    await wait_for_call(fakes, ACT_SEND_CONTRACT)
    await handle.signal(SIGNAL_SIGNATURE_COMPLETED, signature(envelope_id, now))
    assert (await status_of(handle)).envelope_id is None
    fakes.hold_send_contract.set()
    status = await result_of(handle)

    assert status.stage == "completed"
    assert status.signature is not None and status.signature.completed_at == now
    assert fakes.inputs(ACT_MARK_CLOSED_WON)[0].close_date == now.date()


async def test_duplicate_and_foreign_signatures_are_noted_and_ignored(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors, quote: QuoteFactory, now: datetime
) -> None:
    handle = await start_deal(env.client, worker.task_queue, quote(), phase=2)
    waiting = await wait_for_stage(handle, "awaiting_signature")
    assert waiting.envelope_id is not None
    await handle.signal(SIGNAL_SIGNATURE_COMPLETED, signature("env-someone-else", now))
    first = signature(waiting.envelope_id, now - timedelta(hours=1))
    await handle.signal(SIGNAL_SIGNATURE_COMPLETED, first)
    await handle.signal(SIGNAL_SIGNATURE_COMPLETED, signature(waiting.envelope_id, now))
    status = await wait_for_stage(handle, "awaiting_invoice_review")

    assert status.signature == first
    assert note_kinds(status) == ["signature_for_other_envelope", "duplicate_signature"]
    assert fakes.inputs(ACT_MARK_CLOSED_WON)[0].close_date == first.completed_at.date()
    assert fakes.names().count(ACT_MARK_CLOSED_WON) == 1
    await handle.signal(SIGNAL_REJECT_INVOICE, InvoiceReview(reviewer="fiona"))
    assert (await result_of(handle)).stage == "review_rejected"


async def test_signals_for_another_stage_are_noted_and_ignored(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors, quote: QuoteFactory, now: datetime
) -> None:
    handle = await start_deal(env.client, worker.task_queue, quote(), phase=3)
    await wait_for_stage(handle, "awaiting_signature")
    await handle.signal(SIGNAL_APPROVE_QUOTE, QuoteDecision(by="dana"))
    await handle.signal(SIGNAL_APPROVE_INVOICE, InvoiceReview(reviewer="fiona"))
    await handle.signal(SIGNAL_RESUME, Resume(by="oscar"))
    await sign(handle, now)
    status = await result_of(handle)

    assert status.stage == "completed"
    assert note_kinds(status) == ["signal_ignored"] * 3
    assert status.quote_decision is None and status.invoice_review is None
    assert fakes.names() == FULL_LOOP


# --- failures park the deal -------------------------------------------------------------------


async def test_non_retryable_vendor_error_parks_the_deal_until_an_operator_resumes_it(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors, quote: QuoteFactory, now: datetime
) -> None:
    fakes.failures[ACT_CREATE_BILLING_CUSTOMER] = [
        ApplicationError("Invalid tax id", {"param": "tax_id.value"}, type=VENDOR_INVALID_REQUEST)
    ]
    handle = await start_deal(env.client, worker.task_queue, quote())
    await sign(handle, now)
    parked = await wait_for_stage(handle, "needs_attention")

    assert fakes.names().count(ACT_CREATE_BILLING_CUSTOMER) == 1, "not retried"
    assert parked.last_error is not None
    assert parked.last_error.step == ACT_CREATE_BILLING_CUSTOMER
    assert parked.last_error.type == VENDOR_INVALID_REQUEST
    assert parked.last_error.message == "Invalid tax id"
    assert parked.last_error.details == {"param": "tax_id.value"}
    description = await handle.describe()
    assert description.typed_search_attributes.get(STAGE_KEY) == "needs_attention"

    await handle.signal(SIGNAL_RESUME, Resume(by="oscar", note="tax id fixed in CRM"))
    status = await result_of(handle)

    assert status.stage == "completed"
    assert fakes.names() == [*FULL_LOOP[:3], ACT_CREATE_BILLING_CUSTOMER, *FULL_LOOP[3:]]
    assert stages(status)[2:5] == ["signed", "needs_attention", "signed"]
    assert status.stage_history[4].note == "resumed, retrying create_billing_customer by oscar"


async def test_retryable_vendor_error_that_never_clears_parks_after_bounded_attempts(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors, quote: QuoteFactory, now: datetime
) -> None:
    # Two quick attempts, then the full retry budget as a regular activity.
    attempts = FIRST_ATTEMPTS_POLICY.maximum_attempts + ACTIVITY_RETRY_POLICY.maximum_attempts
    fakes.failures[ACT_SEND_FIRST_INVOICE] = [
        ApplicationError("Stripe answered 503", type=VENDOR_UNAVAILABLE) for _ in range(attempts)
    ]
    handle = await start_deal(env.client, worker.task_queue, quote())
    await sign(handle, now)
    await wait_for_call(fakes, ACT_SEND_FIRST_INVOICE)
    # Retry backoff is server time: skip past all of it.
    await env.sleep(timedelta(minutes=30))
    parked = await wait_for_stage(handle, "needs_attention")

    assert fakes.names().count(ACT_SEND_FIRST_INVOICE) == attempts
    assert parked.last_error is not None
    assert parked.last_error.step == ACT_SEND_FIRST_INVOICE
    assert parked.last_error.type == VENDOR_UNAVAILABLE

    await handle.signal(SIGNAL_RESUME, Resume(by="oscar"))
    status = await result_of(handle)
    assert status.stage == "completed"
    assert fakes.names().count(ACT_SEND_FIRST_INVOICE) == attempts + 1


async def test_deal_parked_before_billing_can_still_be_marked_lost(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors, quote: QuoteFactory
) -> None:
    fakes.failures[ACT_SEND_CONTRACT] = [
        ApplicationError("template missing", type=VENDOR_INVALID_REQUEST)
    ]
    handle = await start_deal(env.client, worker.task_queue, quote())
    await wait_for_stage(handle, "needs_attention")
    await handle.signal(SIGNAL_MARK_LOST, MarkLost(by="sam"))
    status = await result_of(handle)

    assert stages(status) == ["contract_sent", "needs_attention", "lost"]
    assert fakes.names() == [ACT_SEND_CONTRACT], "no envelope exists, so none is voided"


# --- start date and visibility ----------------------------------------------------------------


async def test_contract_starting_in_the_future_creates_the_subscription_on_its_start_date(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors, quote: QuoteFactory, now: datetime
) -> None:
    start = (now + timedelta(days=20)).date()
    handle = await start_deal(env.client, worker.task_queue, quote(requested_start=start))
    await sign(handle, now)
    status = await result_of(handle)

    assert status.stage == "completed"
    assert status.start_date == start
    [subscription] = fakes.inputs(ACT_CREATE_SUBSCRIPTION)
    assert subscription.priced.invoices[0].date == start
    # Workflow time: a local step's own scheduled time is the worker's clock, which the
    # time-skipping server does not move.
    entered = {entry.stage: entry.at for entry in status.stage_history}
    assert entered["billing_account_created"].date() < start
    assert entered["subscription_created"] >= datetime.combine(start, time.min, tzinfo=UTC)
    assert "waiting_for_start_date" in note_kinds(status)


async def test_every_stage_change_is_upserted_to_the_search_attributes(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors, quote: QuoteFactory, now: datetime
) -> None:
    priced = quote()
    handle = await start_deal(env.client, worker.task_queue, priced, phase=3)
    await sign(handle, now)
    status = await result_of(handle)

    history = await handle.fetch_history()
    upserted = [
        decode_typed_search_attributes(
            event.upsert_workflow_search_attributes_event_attributes.search_attributes
        )
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES
    ]
    # workflow.patched() upserts TemporalChangeVersion on its own; the deal's own upserts are
    # the ones carrying the stage.
    patch_markers = [a for a in upserted if a.get(STAGE_KEY) is None]
    assert [a.get(CHANGE_VERSION_KEY) for a in patch_markers] == [
        [PATCH_VISIBLE_RETRIES],
        [PATCH_LOCAL_STEPS_AFTER_SIGNATURE, PATCH_VISIBLE_RETRIES],
    ]
    upserted = [a for a in upserted if a.get(STAGE_KEY) is not None]
    assert [attributes.get(STAGE_KEY) for attributes in upserted] == stages(status)
    for attributes in upserted:
        assert attributes.get(CUSTOMER_KEY) == "Acme Robotics, Inc."
        assert attributes.get(ARR_KEY) == pytest.approx(priced.arr_minor / 100)
        assert attributes.get(PHASE_KEY) == 3
    described = await handle.describe()
    assert described.typed_search_attributes.get(STAGE_KEY) == "completed"


async def test_status_query_answers_while_the_deal_waits_for_its_signature(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors, quote: QuoteFactory
) -> None:
    priced = quote()
    handle = await start_deal(env.client, worker.task_queue, priced, phase=2)
    status = await wait_for_stage(handle, "awaiting_signature")

    assert status.deal_id == workflow_id_for(priced.opportunity_id) == handle.id
    assert (status.opportunity_id, status.quote_id) == (priced.opportunity_id, priced.quote_id)
    assert (status.customer, status.currency) == ("Acme Robotics, Inc.", "usd")
    assert status.arr_minor == priced.arr_minor
    assert status.envelope_id == FakeVendors.envelope_id_for(status.deal_id)
    assert status.stage_history[0].note == "started by sam.sales@sandbox.example"
    assert status.invoice_preview is None, "the schedule is dated only once signed"
    assert all(isinstance(entry.at, datetime) for entry in status.stage_history)
    await handle.signal(SIGNAL_MARK_LOST, MarkLost(by="sam"))
    assert (await result_of(handle)).stage == "lost"


async def test_approved_invoice_waiting_for_a_future_start_leaves_the_review_queue(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors, quote: QuoteFactory, now: datetime
) -> None:
    start = (now + timedelta(days=20)).date()
    handle = await start_deal(env.client, worker.task_queue, quote(requested_start=start), phase=2)
    await sign(handle, now)
    await wait_for_stage(handle, "awaiting_invoice_review")
    await handle.signal(SIGNAL_APPROVE_INVOICE, InvoiceReview(reviewer="fiona"))
    waiting = await wait_for_stage(handle, "billing_account_created")

    assert ACT_CREATE_SUBSCRIPTION not in fakes.names()
    assert waiting.invoice_review == InvoiceReview(reviewer="fiona")
    status = await result_of(handle)
    assert stages(status)[3:6] == [
        "billing_account_created",
        "awaiting_invoice_review",
        "billing_account_created",
    ]
    assert status.stage == "completed"


async def test_a_contract_step_resumed_after_the_quote_expired_sends_nothing_and_expires(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors, quote: QuoteFactory, now: datetime
) -> None:
    fakes.failures[ACT_SEND_CONTRACT] = [
        ApplicationError("Unknown template", type=VENDOR_INVALID_REQUEST)
    ]
    valid_until = (now + timedelta(days=2)).date()
    handle = await start_deal(env.client, worker.task_queue, quote(valid_until=valid_until))
    await wait_for_stage(handle, "needs_attention")
    await env.sleep(timedelta(days=3))  # the template is fixed only after the quote expired

    await handle.signal(SIGNAL_RESUME, Resume(by="oscar", note="template fixed"))
    status = await result_of(handle)

    assert status.stage == "expired"
    assert fakes.names() == [ACT_SEND_CONTRACT]
