"""The deal use cases: start, inspect, list and decide deals on Temporal.

Every entry point (the HTTP API, its webhooks, the ``qtc deal`` commands, the Closed-Won starter)
goes through these functions, so a deal started from anywhere gets the same workflow id, the same
id policies, the same search attributes and the same settings-derived options. Temporal failures
are translated here, once, into the exceptions below, which callers map to their own vocabulary
(HTTP 404 / 409 / 503, CLI exit codes).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any, get_args

from pydantic import BaseModel
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import SignalWorkflowExecutionRequest
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowUpdateFailedError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import FailureError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from qtc import deal as contract
from qtc import ports
from qtc.deal import (
    AccountCorrection,
    AmendmentTerms,
    Cancel,
    DealInput,
    DealStatus,
    DecisionResult,
    Phase,
    SignatureCompleted,
    Stage,
)
from qtc.models import Model, PricedQuote
from qtc.money import format_minor
from runtime.search_attributes import (
    ARR_KEY,
    BLOCKED_STEP_KEY,
    CURRENCY_KEY,
    CUSTOMER_KEY,
    ERROR_TYPE_KEY,
    MINOR_PER_MAJOR,
    PHASE_KEY,
    STAGE_KEY,
)
from runtime.settings import Settings

# Memo keys: what a later start for the same opportunity is compared against.
MEMO_QUOTE_ID = "qtc_quote_id"
MEMO_QUOTE_FINGERPRINT = "qtc_quote_fingerprint"
MEMO_START_NONCE = "qtc_start_nonce"

# A caller (a webhook sender above all) must get an answer quickly: Temporal unreachable for this
# long is reported as unavailable so the sender retries, instead of holding its connection open.
DEFAULT_RPC_TIMEOUT = timedelta(seconds=5)


_UNAVAILABLE_CODES = frozenset(
    {
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.CANCELLED,
        RPCStatusCode.RESOURCE_EXHAUSTED,
    }
)


class DealServiceError(Exception):
    """Base of the errors this module raises on purpose."""


class DealNotFound(DealServiceError):
    """No deal (workflow) has this id."""

    def __init__(self, deal_id: str) -> None:
        self.deal_id = deal_id
        super().__init__(f"no deal with id {deal_id!r}")


class DealConflict(DealServiceError):
    """The request contradicts the deal as it exists (a different quote, or a finished deal)."""

    def __init__(self, deal_id: str, message: str) -> None:
        self.deal_id = deal_id
        super().__init__(message)


class DealFinished(DealConflict):
    """The deal's workflow has closed; it accepts no more signals."""

    def __init__(self, deal_id: str) -> None:
        super().__init__(deal_id, f"deal {deal_id!r} has finished and accepts no more signals")


class TemporalUnavailable(DealServiceError):
    """Temporal could not be reached (or did not answer in time); the request may be retried."""


class DealWorkerUnavailable(TemporalUnavailable):
    """No worker answered for a deal that is still open; ``stage`` is the last one recorded."""

    def __init__(self, deal_id: str, stage: str | None) -> None:
        self.deal_id = deal_id
        self.stage = stage
        super().__init__(
            f"no deal worker answered for {deal_id!r}; its last recorded stage is {stage!r}"
        )


class DecisionRefused(DealConflict):
    """The deal refused a decision (its validator said no; nothing was written to its history)."""

    def __init__(self, deal_id: str, message: str, current_stage: str | None) -> None:
        super().__init__(deal_id, f"{deal_id} refused: {message}")
        self.reason = message
        self.current_stage = current_stage


class StartResult(Model):
    deal_id: str
    created: bool


class DealSummary(Model):
    """One row of ``list_deals``: what visibility knows without asking the workflow."""

    deal_id: str
    opportunity_id: str
    stage: str | None = None
    customer: str | None = None
    arr: float | None = None
    currency: str | None = None
    phase: int | None = None
    # The step a deal is blocked on (retrying, or parked in needs_attention) and its error type.
    blocked_step: str | None = None
    error_type: str | None = None
    status: str
    started_at: datetime | None = None
    closed_at: datetime | None = None


def quote_fingerprint(priced: PricedQuote) -> str:
    """A hash of what was sold, independent of when it was priced.

    Two pricings of the same quote on different days differ in their dates and schedule, but not
    in their lines and commercial terms; this compares exactly those.
    """
    sold: dict[str, Any] = {
        "currency": priced.currency,
        "term_months": priced.term_months,
        "billing_frequency": priced.billing_frequency,
        "billing_anchor": priced.billing_anchor,
        "payment_terms_days": priced.payment_terms_days,
        "uplift_percent": str(priced.uplift_percent),
        "account": priced.account.model_dump(mode="json"),
        "lines": [line.model_dump(mode="json") for line in priced.lines],
    }
    return hashlib.sha256(json.dumps(sold, sort_keys=True).encode()).hexdigest()


def initial_stage(priced: PricedQuote) -> Stage:
    """The stage a new deal starts in, so visibility shows it before the first workflow task."""
    return "pending_approval" if priced.status == "needs_approval" else "contract_sent"


def _search_attributes(
    priced: PricedQuote, phase: Phase, customer_label: str | None
) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [
            SearchAttributePair(STAGE_KEY, initial_stage(priced)),
            SearchAttributePair(CURRENCY_KEY, priced.currency.upper()),
            SearchAttributePair(CUSTOMER_KEY, customer_label or priced.account.legal_name),
            SearchAttributePair(ARR_KEY, priced.arr_minor / MINOR_PER_MAJOR),
            SearchAttributePair(PHASE_KEY, phase),
        ]
    )


def _translate(err: RPCError, deal_id: str) -> DealServiceError:
    if err.status in _UNAVAILABLE_CODES:
        return TemporalUnavailable(f"Temporal did not answer: {err.message}")
    if err.status == RPCStatusCode.NOT_FOUND:
        return DealNotFound(deal_id)
    return DealServiceError(f"Temporal refused the request for {deal_id!r}: {err.message}")


@asynccontextmanager
async def _temporal_call(deal_id: str, rpc_timeout: timedelta) -> AsyncIterator[None]:
    """Bound a Temporal call in time and translate its failures.

    The client retries an unreachable server on its own for longer than a webhook sender waits,
    so the whole call, retries included, gets the same deadline.
    """
    try:
        async with asyncio.timeout(rpc_timeout.total_seconds()):
            yield
    except TimeoutError as err:
        raise TemporalUnavailable(f"Temporal did not answer within {rpc_timeout}") from err
    except RPCError as err:
        raise _translate(err, deal_id) from err


async def _describe(
    client: Client, deal_id: str, rpc_timeout: timedelta
) -> WorkflowExecutionDescription:
    async with _temporal_call(deal_id, rpc_timeout):
        return await client.get_workflow_handle(deal_id).describe(rpc_timeout=rpc_timeout)


def rpc_timeout(settings: Settings) -> timedelta:
    """How long an entry point waits for Temporal before reporting it unavailable."""
    return timedelta(seconds=settings.api_temporal_timeout_s)


async def start_deal(
    client: Client,
    settings: Settings,
    priced: PricedQuote,
    *,
    phase: Phase,
    started_by: str,
    amends: AmendmentTerms | None = None,
) -> StartResult:
    """Start the deal for a priced quote, or join the one already running for its opportunity.

    The workflow id is derived from the opportunity, the id-reuse policy refuses a second run after
    the first closed and the id-conflict policy returns the running one, so one opportunity never
    has two deals however many times it is submitted. Everything else the deal needs from the
    settings (task queue, the QtcCustomer label, review reminders, the CRM's name) is read here,
    so no entry point can start a deal differently.

    Args:
        client: A Temporal client with the pydantic data converter.
        settings: The process settings.
        priced: The priced quote; it travels in the workflow input.
        phase: Rollout phase (1, 2 or 3).
        started_by: Who asked (a person or a webhook name), recorded on the deal.
        amends: For an amendment deal (``service.amendments``): the deal it amends.

    Returns:
        The deal id and whether this call created the deal (``False``: it already existed with
        the same quote).

    Raises:
        DealConflict: The deal exists with a different quote.
        TemporalUnavailable: Temporal could not be reached.
    """
    timeout = rpc_timeout(settings)
    customer_label = settings.customer_search_label(priced.opportunity_id)
    deal_id = contract.deal_id_for(priced.opportunity_id)
    fingerprint = quote_fingerprint(priced)
    # A fresh nonce in the memo tells this start apart from a concurrent one that won the race.
    start_nonce = uuid.uuid4().hex
    try:
        async with _temporal_call(deal_id, timeout):
            await client.start_workflow(
                contract.WORKFLOW_NAME,
                DealInput(
                    priced=priced,
                    phase=phase,
                    started_by=started_by,
                    customer_label=customer_label,
                    review_reminder_hours=settings.review_reminder_hours,
                    crm=settings.crm,
                    erp=None if settings.erp == "none" else settings.erp,
                    amends=amends,
                    tax=settings.tax == "on",
                    remote_steps=settings.deal_steps == "remote",
                ),
                id=deal_id,
                task_queue=settings.temporal_task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                memo={
                    MEMO_QUOTE_ID: priced.quote_id,
                    MEMO_QUOTE_FINGERPRINT: fingerprint,
                    MEMO_START_NONCE: start_nonce,
                },
                search_attributes=_search_attributes(priced, phase, customer_label),
                # What the Web UI's deal page says at a glance (encrypted like any payload).
                static_summary=(
                    f"{priced.account.legal_name}: quote {priced.quote_id}, phase {phase}, "
                    f"ARR {format_minor(priced.arr_minor, priced.currency)}"
                ),
                rpc_timeout=timeout,
            )
    except WorkflowAlreadyStartedError:
        pass  # the deal ran before and has closed; compared against below like a running one
    memo = await (await _describe(client, deal_id, timeout)).memo()
    if memo.get(MEMO_START_NONCE) == start_nonce:
        return StartResult(deal_id=deal_id, created=True)
    same_quote = memo.get(MEMO_QUOTE_ID) == priced.quote_id
    if not same_quote or memo.get(MEMO_QUOTE_FINGERPRINT) != fingerprint:
        raise DealConflict(
            deal_id,
            f"deal {deal_id} already exists for opportunity {priced.opportunity_id} with quote "
            f"{memo.get(MEMO_QUOTE_ID)!r}; a different quote cannot replace a running contract",
        )
    return StartResult(deal_id=deal_id, created=False)


async def get_status(
    client: Client, deal_id: str, *, rpc_timeout: timedelta = DEFAULT_RPC_TIMEOUT
) -> DealStatus:
    """The deal's status: the workflow's answer to the status query, which a worker gives.

    When no worker answers (none polls, or Temporal refuses with "no poller seen"), the status
    Temporal itself recorded is used: a completed deal's result is its final status, read from
    history without a worker. A running deal's live status has no such record, so that case is
    ``DealWorkerUnavailable`` with the last recorded stage (the ``QtcStage`` search attribute).

    Raises:
        DealNotFound: No deal has this id.
        DealWorkerUnavailable: The deal is not closed and no worker answered; retry later.
        TemporalUnavailable: Temporal did not answer in time.
    """
    try:
        async with _temporal_call(deal_id, rpc_timeout):
            return await client.get_workflow_handle(deal_id).query(
                contract.QUERY_STATUS, result_type=DealStatus, rpc_timeout=rpc_timeout
            )
    except DealNotFound:
        raise
    except DealServiceError as unanswered:
        return await _recorded_status(client, deal_id, rpc_timeout, unanswered)


async def _recorded_status(
    client: Client, deal_id: str, rpc_timeout: timedelta, unanswered: DealServiceError
) -> DealStatus:
    # Temporal unreachable fails this describe too, and is reported as such.
    description = await _describe(client, deal_id, rpc_timeout)
    if description.status == WorkflowExecutionStatus.COMPLETED:
        async with _temporal_call(deal_id, rpc_timeout):
            handle = client.get_workflow_handle(deal_id, result_type=DealStatus)
            return await handle.result(rpc_timeout=rpc_timeout)
    stage = description.typed_search_attributes.get(STAGE_KEY)
    raise DealWorkerUnavailable(deal_id, stage) from unanswered


def _summary(execution: Any) -> DealSummary:
    attrs: TypedSearchAttributes = execution.typed_search_attributes
    status: WorkflowExecutionStatus | None = execution.status
    deal_id: str = execution.id
    return DealSummary(
        deal_id=deal_id,
        opportunity_id=deal_id.removeprefix("deal-"),
        stage=attrs.get(STAGE_KEY),
        customer=attrs.get(CUSTOMER_KEY),
        arr=attrs.get(ARR_KEY),
        currency=attrs.get(CURRENCY_KEY),
        phase=attrs.get(PHASE_KEY),
        blocked_step=attrs.get(BLOCKED_STEP_KEY),
        error_type=attrs.get(ERROR_TYPE_KEY),
        status=status.name.lower() if status else "unknown",
        started_at=execution.start_time,
        closed_at=execution.close_time,
    )


async def list_deals(
    client: Client,
    stage: str | None,
    limit: int = 100,
    *,
    rpc_timeout: timedelta = DEFAULT_RPC_TIMEOUT,
) -> list[DealSummary]:
    """List deals from Temporal visibility, newest first, optionally in one stage.

    Args:
        client: A Temporal client.
        stage: Only deals whose ``QtcStage`` is this; checked against the stage names (so it is
            safe to put in the query).
        limit: At most this many deals.
        rpc_timeout: Per page.

    Raises:
        ValueError: ``stage`` is not a stage name.
        TemporalUnavailable: Temporal could not be reached.
    """
    query = f"WorkflowType = '{contract.WORKFLOW_NAME}'"
    if stage is not None:
        if stage not in get_args(Stage):
            raise ValueError(f"unknown stage {stage!r}; one of {', '.join(get_args(Stage))}")
        query += f" AND {ports.SA_STAGE} = '{stage}'"
    async with _temporal_call("*", rpc_timeout):
        return [
            _summary(execution)
            async for execution in client.list_workflows(
                query, limit=limit, page_size=min(limit, 1000), rpc_timeout=rpc_timeout
            )
        ]


async def signal(
    client: Client,
    deal_id: str,
    signal_name: str,
    model: BaseModel,
    *,
    request_id: str | None = None,
    rpc_timeout: timedelta = DEFAULT_RPC_TIMEOUT,
) -> None:
    """Send one signal to a running deal; returns once Temporal has durably recorded it.

    Args:
        client: A Temporal client.
        deal_id: The deal (workflow) id.
        signal_name: One of the ``SIGNAL_*`` names in ``qtc.deal``.
        model: The signal's input model.
        request_id: A key that makes redelivery harmless: Temporal records a signal with a
            request id it has already seen for this run only once. Webhooks pass one derived from
            the event (e.g. the envelope id), so a duplicate delivery adds nothing to the history.
        rpc_timeout: How long to wait for Temporal before reporting it unavailable.

    Raises:
        DealNotFound: No deal has this id.
        DealFinished: The deal has closed.
        TemporalUnavailable: Temporal could not be reached.
    """
    # The SDK's handle.signal() always draws a random request id, which would defeat the
    # server-side de-duplication; the request is therefore built here with the client's own
    # data converter, exactly as the SDK builds it.
    request = SignalWorkflowExecutionRequest(
        namespace=client.namespace,
        workflow_execution=WorkflowExecution(workflow_id=deal_id),
        signal_name=signal_name,
        identity=client.identity,
        request_id=request_id or uuid.uuid4().hex,
    )
    request.input.payloads.extend(await client.data_converter.encode([model]))
    try:
        async with _temporal_call(deal_id, rpc_timeout):
            await client.workflow_service.signal_workflow_execution(
                request, retry=True, timeout=rpc_timeout
            )
    except DealNotFound:
        # NOT_FOUND also means "closed"; only a describe tells a finished deal from no deal.
        await _describe(client, deal_id, rpc_timeout)
        raise DealFinished(deal_id) from None


def signal_request_id(deal_id: str, event_key: str) -> str:
    """A stable request id for a webhook event, so a redelivery is recorded once."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"qtc:{deal_id}:{event_key}"))


async def record_signature(
    client: Client,
    deal_id: str,
    signature: SignatureCompleted,
    *,
    rpc_timeout: timedelta = DEFAULT_RPC_TIMEOUT,
) -> None:
    """An e-signature webhook: the contract was signed. Redelivery of the same signature is
    recorded once (the request id is derived from the contract's id)."""
    await signal(
        client,
        deal_id,
        contract.SIGNAL_SIGNATURE_COMPLETED,
        signature,
        request_id=signal_request_id(deal_id, f"signature:{signature.envelope_id}"),
        rpc_timeout=rpc_timeout,
    )


async def decide(
    client: Client,
    deal_id: str,
    update_name: str,
    request: BaseModel,
    *,
    rpc_timeout: timedelta = DEFAULT_RPC_TIMEOUT,
) -> DecisionResult:
    """Send a decision as a Workflow Update and wait for its answer.

    Returns:
        The stage the decision led to (and a message).

    Raises:
        DecisionRefused: The deal's validator refused it (nothing was written); the current
            stage is attached.
        DealNotFound: No deal has this id.
        DealFinished: The deal has closed.
        TemporalUnavailable: Temporal, or the deal's worker, did not answer in time.
    """
    handle = client.get_workflow_handle(deal_id)
    try:
        async with _temporal_call(deal_id, rpc_timeout):
            return await handle.execute_update(
                update_name, request, result_type=DecisionResult, rpc_timeout=rpc_timeout
            )
    except WorkflowUpdateFailedError as err:
        reason = str(err.cause.message) if isinstance(err.cause, FailureError) else str(err)
        stage = await _current_stage(client, deal_id, rpc_timeout)
        raise DecisionRefused(deal_id, reason, stage) from err
    except DealNotFound:
        await _describe(client, deal_id, rpc_timeout)
        raise DealFinished(deal_id) from None


async def _current_stage(client: Client, deal_id: str, rpc_timeout: timedelta) -> str | None:
    description = await _describe(client, deal_id, rpc_timeout)
    stage = description.typed_search_attributes.get(STAGE_KEY)
    return str(stage) if stage is not None else None


async def correct_account(
    client: Client, deal_id: str, correction: AccountCorrection
) -> DecisionResult:
    """Operator: correct the signed legal entity of a parked deal (then resume)."""
    return await decide(client, deal_id, contract.UPDATE_CORRECT_ACCOUNT, correction)


async def cancel(client: Client, deal_id: str, request: Cancel) -> DecisionResult:
    """Operator: end a parked deal for good; the answer says what was left in each system."""
    return await decide(client, deal_id, contract.UPDATE_CANCEL, request)
