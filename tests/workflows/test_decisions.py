"""Decisions as Workflow Updates, the ledger the deal writes, and the notifications it sends."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from qtc.deal import (
    DECISION_REFUSED,
    SIGNAL_SIGNATURE_COMPLETED,
    UPDATE_APPROVE_INVOICE,
    UPDATE_APPROVE_QUOTE,
    UPDATE_MARK_LOST,
    UPDATE_REJECT_QUOTE,
    UPDATE_RESUME,
    DealStatus,
    DecisionResult,
    InvoiceReview,
    MarkLost,
    QuoteDecision,
    Resume,
)
from qtc.errors import VENDOR_INVALID_REQUEST
from qtc.models import PricedQuote
from qtc.ports import ACT_CREATE_SUBSCRIPTION, ACT_RECORD_LEDGER_EVENTS, ACT_SEND_NOTIFICATION
from tests.workflows.support import (
    FakeVendors,
    deal_worker,
    signature,
    start_deal,
    wait_for_stage,
)
from workflows.deal import DealWorkflow

QuoteFactory = Callable[..., PricedQuote]
Handle = WorkflowHandle[DealWorkflow, DealStatus]


async def sign(handle: Handle, at: datetime) -> None:
    status = await wait_for_stage(handle, "awaiting_signature")
    assert status.envelope_id is not None
    await handle.signal(SIGNAL_SIGNATURE_COMPLETED, signature(status.envelope_id, at))


async def decide(handle: Handle, update: str, arg: object) -> str:
    result = await handle.execute_update(update, arg, result_type=DecisionResult)
    return result.stage


async def refusal(handle: Handle, update: str, arg: object) -> ApplicationError:
    with pytest.raises(WorkflowUpdateFailedError) as raised:
        await handle.execute_update(update, arg, result_type=DecisionResult)
    cause = raised.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == DECISION_REFUSED
    return cause


_WORKFLOW_TASK_EVENTS = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
}


async def history_event_types(handle: Handle) -> list[int]:
    """The deal's events but workflow tasks: the time-skipping server records the task that ran
    a refused update's validator (the dev server's speculative task leaves nothing)."""
    events = (await handle.fetch_history()).events
    return [e.event_type for e in events if e.event_type not in _WORKFLOW_TASK_EVENTS]


async def test_an_approved_quote_answers_with_the_stage_it_led_to(
    env: WorkflowEnvironment, worker: Worker, quote: QuoteFactory, now: datetime
) -> None:
    handle = await start_deal(
        env.client, worker.task_queue, quote(status="needs_approval"), phase=1
    )
    await wait_for_stage(handle, "pending_approval")

    stage = await decide(handle, UPDATE_APPROVE_QUOTE, QuoteDecision(by="dana", note="ok"))
    await sign(handle, now)
    await handle.result()

    assert stage == "contract_sent"


async def test_a_second_decision_is_refused_with_the_current_stage_and_writes_nothing(
    env: WorkflowEnvironment, worker: Worker, quote: QuoteFactory
) -> None:
    handle = await start_deal(env.client, worker.task_queue, quote(status="needs_approval"))
    await wait_for_stage(handle, "pending_approval")
    assert await decide(handle, UPDATE_REJECT_QUOTE, QuoteDecision(by="dana")) == "quote_rejected"
    await handle.result()
    events_before = await history_event_types(handle)

    # The deal has ended: Temporal refuses the update before any handler runs.
    with pytest.raises(Exception):  # noqa: B017 - RPCError or WorkflowUpdateFailedError
        await handle.execute_update(
            UPDATE_APPROVE_QUOTE, QuoteDecision(by="eve"), result_type=DecisionResult
        )

    assert await history_event_types(handle) == events_before


async def test_a_decision_in_the_wrong_stage_is_refused_and_not_recorded(
    env: WorkflowEnvironment, worker: Worker, quote: QuoteFactory, now: datetime
) -> None:
    handle = await start_deal(env.client, worker.task_queue, quote(), phase=1)
    await wait_for_stage(handle, "awaiting_signature")
    events_before = await history_event_types(handle)

    refused = await refusal(handle, UPDATE_APPROVE_INVOICE, InvoiceReview(reviewer="fiona"))
    resume_refused = await refusal(handle, UPDATE_RESUME, Resume(by="oscar"))

    assert refused.details == ({"current_stage": "awaiting_signature"},)
    assert "not waiting for review" in refused.message
    assert "needs_attention" in resume_refused.message
    assert await history_event_types(handle) == events_before
    status = await wait_for_stage(handle, "awaiting_signature")
    assert status.notes == []
    # Every test ends its deal: one left waiting would hold the time-skipping clock.
    await sign(handle, now)
    await handle.result()


async def test_finance_approves_once_and_a_second_approval_is_refused(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors, quote: QuoteFactory, now: datetime
) -> None:
    # Starting in a week: after the approval the deal waits for its start date, still running.
    priced = quote(requested_start=(now + timedelta(days=7)).date())
    handle = await start_deal(env.client, worker.task_queue, priced, phase=2)
    await sign(handle, now)
    await wait_for_stage(handle, "awaiting_invoice_review")

    first = await decide(handle, UPDATE_APPROVE_INVOICE, InvoiceReview(reviewer="fiona"))
    second = await refusal(handle, UPDATE_APPROVE_INVOICE, InvoiceReview(reviewer="fred"))
    status = await handle.result()

    assert first == "billing_account_created"
    assert second.details[0]["current_stage"] != "awaiting_invoice_review"
    assert status.stage == "completed"
    assert status.invoice_review == InvoiceReview(reviewer="fiona")
    decisions = [e for e in fakes.ledger if e.kind == "decision"]
    assert [(e.actor, e.detail["decision"]) for e in decisions] == [("fiona", "approve_invoice")]


async def test_resume_as_an_update_retries_the_parked_step(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors, quote: QuoteFactory, now: datetime
) -> None:
    fakes.failures[ACT_CREATE_SUBSCRIPTION] = [ApplicationError("bad", type=VENDOR_INVALID_REQUEST)]
    handle = await start_deal(env.client, worker.task_queue, quote())
    await sign(handle, now)
    await wait_for_stage(handle, "needs_attention")

    stage = await decide(handle, UPDATE_RESUME, Resume(by="oscar", note="price fixed"))
    status = await handle.result()

    assert stage == "billing_account_created"
    assert status.stage == "completed"


async def test_mark_lost_as_an_update_is_refused_once_signed(
    env: WorkflowEnvironment, worker: Worker, quote: QuoteFactory, now: datetime
) -> None:
    fakes_hold = await start_deal(env.client, worker.task_queue, quote(), phase=1)
    await wait_for_stage(fakes_hold, "awaiting_signature")
    lost = await decide(fakes_hold, UPDATE_MARK_LOST, MarkLost(by="sam", reason="budget"))
    assert lost == "lost"

    signed = await start_deal(env.client, worker.task_queue, quote(), phase=1)
    await sign(signed, now)
    await signed.result()
    with pytest.raises(Exception):  # noqa: B017 - the deal has closed
        await signed.execute_update(
            UPDATE_MARK_LOST, MarkLost(by="sam"), result_type=DecisionResult
        )


async def test_the_ledger_holds_every_stage_decision_and_the_invoice_totals(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors, quote: QuoteFactory, now: datetime
) -> None:
    priced = quote(status="needs_approval")
    handle = await start_deal(env.client, worker.task_queue, priced, phase=2)
    await wait_for_stage(handle, "pending_approval")
    await decide(handle, UPDATE_APPROVE_QUOTE, QuoteDecision(by="dana", note="strategic"))
    await sign(handle, now)
    await wait_for_stage(handle, "awaiting_invoice_review")
    await decide(handle, UPDATE_APPROVE_INVOICE, InvoiceReview(reviewer="fiona", note="ok"))
    status = await handle.result()

    ledger = fakes.ledger
    assert [e.seq for e in ledger] == list(range(1, len(ledger) + 1))
    entered = [e.stage for e in ledger if e.kind == "stage"]
    assert entered == [entry.stage for entry in status.stage_history]
    decisions = [(e.stage, e.actor, e.detail) for e in ledger if e.kind == "decision"]
    assert decisions == [
        ("pending_approval", "dana", {"decision": "approve_quote", "note": "strategic"}),
        ("awaiting_invoice_review", "fiona", {"decision": "approve_invoice", "note": "ok"}),
    ]
    [invoice] = [e for e in ledger if e.kind == "invoice"]
    assert invoice.detail["total_minor"] == invoice.detail["quoted_total_minor"]
    assert invoice.detail["billing_invoice_id"] == status.billing_invoice_id
    completed = next(e for e in ledger if e.stage == "completed" and e.kind == "stage")
    assert completed.detail["billing_customer_id"] == status.billing_customer_id
    # Written in a few batches when the deal came to rest, not once per event.
    assert fakes.ledger_writes <= 6


async def test_a_failing_ledger_is_noted_and_never_holds_up_the_money_steps(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors, quote: QuoteFactory, now: datetime
) -> None:
    fakes.failures[ACT_RECORD_LEDGER_EVENTS] = [
        ApplicationError("database is down", non_retryable=True) for _ in range(2)
    ]
    handle = await start_deal(env.client, worker.task_queue, quote())
    await sign(handle, now)
    status = await handle.result()

    assert status.stage == "completed"
    assert "ledger_write_failed" in [note.kind for note in status.notes]
    # The events of the failed write went out with the next one: none is missing.
    assert [e.stage for e in fakes.ledger if e.kind == "stage"] == [
        entry.stage for entry in status.stage_history
    ]


async def test_a_waiting_deal_notifies_reminds_and_escalates_once_each(
    env: WorkflowEnvironment,
    task_queue: str,
    fakes: FakeVendors,
    quote: QuoteFactory,
    now: datetime,
) -> None:
    async with deal_worker(env.client, task_queue, fakes):
        handle = await start_deal(
            env.client,
            task_queue,
            quote(),
            phase=2,
            notify=True,
            notify_remind_hours=24,
            notify_escalate_hours=36,
        )
        await sign(handle, now)
        await wait_for_stage(handle, "awaiting_invoice_review")
        # Time skips while the test waits on the server: two reminders and the escalation.
        await env.sleep(timedelta(hours=50))
        await decide(handle, UPDATE_APPROVE_INVOICE, InvoiceReview(reviewer="fiona"))
        await handle.result()

    sent = [(n.kind, n.escalate, n.audience) for n in fakes.notifications]
    assert sent == [
        ("entered", False, "finance"),
        ("reminder", False, "finance"),
        ("escalation", True, "finance"),
        ("reminder", False, "finance"),
    ]
    assert len({n.key for n in fakes.notifications}) == 4
    assert [e.detail["key"] for e in fakes.ledger if e.kind == "notification"] == [
        n.key for n in fakes.notifications
    ]


async def test_a_failing_notification_is_noted_and_the_deal_goes_on(
    env: WorkflowEnvironment, task_queue: str, fakes: FakeVendors, quote: QuoteFactory
) -> None:
    fakes.failures[ACT_SEND_NOTIFICATION] = [
        ApplicationError("channel_not_found", type=VENDOR_INVALID_REQUEST)
    ]
    async with deal_worker(env.client, task_queue, fakes):
        handle = await start_deal(
            env.client, task_queue, quote(status="needs_approval"), phase=1, notify=True
        )
        await wait_for_stage(handle, "pending_approval")
        stage = await decide(handle, UPDATE_REJECT_QUOTE, QuoteDecision(by="dana"))
        status = await handle.result()

    assert stage == "quote_rejected"
    assert "notification_failed" in [note.kind for note in status.notes]


async def test_an_update_accepted_then_completed_is_in_history_and_a_refused_one_is_not(
    env: WorkflowEnvironment, worker: Worker, quote: QuoteFactory, now: datetime
) -> None:
    handle = await start_deal(
        env.client, worker.task_queue, quote(status="needs_approval"), phase=1
    )
    await wait_for_stage(handle, "pending_approval")
    await refusal(handle, UPDATE_RESUME, Resume(by="oscar"))
    await decide(handle, UPDATE_APPROVE_QUOTE, QuoteDecision(by="dana"))
    await sign(handle, now)
    await handle.result()

    types = await history_event_types(handle)

    assert types.count(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED) == 1
    assert types.count(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED) == 1
