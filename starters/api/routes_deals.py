"""``/v1/deals``: start, inspect, list and steer deals.

Who did something is always the token's person: bodies carry decisions and notes, never names.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from qtc import deal as contract
from qtc.amendments import amendment_to_json
from qtc.deal import (
    AccountCorrection,
    Cancel,
    DealStatus,
    DecisionResult,
    InvoiceReview,
    MarkLost,
    Phase,
    QuoteDecision,
    Resume,
    Stage,
)
from qtc.errors import QuoteRejected
from qtc.models import Account
from runtime.settings import ApiPrincipal
from service import deals
from service.amendments import start_amendment
from starters.api.auth import authenticated, require_role
from starters.api.pricing import price_or_reject, rejected_problem
from starters.api.problems import problem_schema
from starters.api.state import State, TemporalClient

router = APIRouter(tags=["deals"])

DealId = Annotated[str, Path(pattern=r"^deal-[A-Za-z0-9_-]{1,64}$", max_length=69)]
Note = Annotated[str | None, Field(max_length=2000)]
_PROBLEMS: dict[int | str, dict[str, Any]] = {
    code: problem_schema() for code in (401, 403, 404, 409, 415, 422, 503)
}


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StartDealRequest(Body):
    quote: dict[str, Any] = Field(description="The quote (docs/architecture.md, section 2)")
    phase: Phase = 3


class StartDealResponse(BaseModel):
    deal_id: str
    created: bool
    status: str = Field(description="Pricing status: ok or needs_approval")


class AmendRequest(Body):
    quote: dict[str, Any] = Field(description="The amendment (docs/architecture.md, Amendments)")
    phase: Phase = 3


class AmendResponse(BaseModel):
    deal_id: str
    created: bool
    amends: str
    status: str = Field(description="Pricing status: ok or needs_approval")
    priced_amendment: dict[str, Any]


class Decision(Body):
    decision: Literal["approve", "reject"]
    note: Note = None


class ResumeRequest(Body):
    note: Note = None


class LostRequest(Body):
    reason: Note = None


class CorrectionRequest(Body):
    account: Account = Field(description="The corrected legal entity (the quote's account)")
    reason: str = Field(min_length=1, max_length=500)


class CancelRequest(Body):
    reason: str = Field(min_length=1, max_length=500)


class SignalAccepted(BaseModel):
    deal_id: str
    signal: str
    accepted: bool = True


class DealList(BaseModel):
    deals: list[deals.DealSummary]


@router.post(
    "/v1/deals",
    status_code=201,
    summary="Price a quote and start its deal (or join the deal already running)",
    responses={200: {"description": "The deal already existed with this quote"}, **_PROBLEMS},
)
async def start_deal(
    body: StartDealRequest,
    response: Response,
    principal: Annotated[ApiPrincipal, Depends(require_role("sales", "operator"))],
    state: State,
    client: TemporalClient,
) -> StartDealResponse:
    priced = price_or_reject(body.quote, state.catalog, datetime.now(UTC))
    result = await deals.start_deal(
        client, state.settings, priced, phase=body.phase, started_by=principal.person
    )
    response.status_code = 201 if result.created else 200
    response.headers["Location"] = f"/v1/deals/{result.deal_id}"
    return StartDealResponse(deal_id=result.deal_id, created=result.created, status=priced.status)


@router.post(
    "/v1/deals/{deal_id}/amendments",
    status_code=201,
    summary="Price an amendment of a billed deal and start its deal (or join it)",
    responses={200: {"description": "The amendment deal already existed"}, **_PROBLEMS},
)
async def amend_deal(
    deal_id: DealId,
    body: AmendRequest,
    response: Response,
    principal: Annotated[ApiPrincipal, Depends(require_role("sales", "operator"))],
    state: State,
    client: TemporalClient,
) -> AmendResponse:
    try:
        result, priced = await start_amendment(
            client,
            state.settings,
            deal_id,
            body.quote,
            state.catalog,
            phase=body.phase,
            started_by=principal.person,
        )
    except QuoteRejected as rejected:
        raise rejected_problem(rejected) from rejected
    response.status_code = 201 if result.created else 200
    response.headers["Location"] = f"/v1/deals/{result.deal_id}"
    return AmendResponse(
        deal_id=result.deal_id,
        created=result.created,
        amends=deal_id,
        status=priced.status,
        priced_amendment=amendment_to_json(priced),
    )


@router.get("/v1/deals/{deal_id}", summary="A deal's status", responses=_PROBLEMS)
async def get_deal(
    deal_id: DealId,
    _: Annotated[ApiPrincipal, Depends(authenticated)],
    state: State,
    client: TemporalClient,
) -> DealStatus:
    """The deal's status. A closed deal's is readable even while no worker runs (its recorded
    result); an open deal whose worker does not answer is 503 ``deal-worker-unavailable`` with
    ``Retry-After`` and the last recorded ``stage``."""
    return await deals.get_status(client, deal_id, rpc_timeout=state.rpc_timeout)


@router.get(
    "/v1/deals", summary="Deals, newest first, optionally in one stage", responses=_PROBLEMS
)
async def list_deals(
    _: Annotated[ApiPrincipal, Depends(authenticated)],
    state: State,
    client: TemporalClient,
    stage: Annotated[Stage | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DealList:
    found = await deals.list_deals(client, stage, limit, rpc_timeout=state.rpc_timeout)
    return DealList(deals=found)


async def _send(
    state: State, client: TemporalClient, deal_id: str, signal: str, model: BaseModel
) -> SignalAccepted:
    await deals.signal(client, deal_id, signal, model, rpc_timeout=state.rpc_timeout)
    return SignalAccepted(deal_id=deal_id, signal=signal)


@router.post(
    "/v1/deals/{deal_id}/quote-approval",
    status_code=202,
    summary="Deal desk: approve or reject a quote that needs approval",
    responses=_PROBLEMS,
)
async def quote_approval(
    deal_id: DealId,
    body: Decision,
    principal: Annotated[ApiPrincipal, Depends(require_role("deal_desk"))],
    state: State,
    client: TemporalClient,
) -> SignalAccepted:
    signal = (
        contract.SIGNAL_APPROVE_QUOTE
        if body.decision == "approve"
        else contract.SIGNAL_REJECT_QUOTE
    )
    return await _send(
        state, client, deal_id, signal, QuoteDecision(by=principal.person, note=body.note)
    )


@router.post(
    "/v1/deals/{deal_id}/invoice-review",
    status_code=202,
    summary="Finance: approve or reject the first invoice (phase 2)",
    responses=_PROBLEMS,
)
async def invoice_review(
    deal_id: DealId,
    body: Decision,
    principal: Annotated[ApiPrincipal, Depends(require_role("finance"))],
    state: State,
    client: TemporalClient,
) -> SignalAccepted:
    signal = (
        contract.SIGNAL_APPROVE_INVOICE
        if body.decision == "approve"
        else contract.SIGNAL_REJECT_INVOICE
    )
    return await _send(
        state, client, deal_id, signal, InvoiceReview(reviewer=principal.person, note=body.note)
    )


@router.post(
    "/v1/deals/{deal_id}/resume",
    status_code=202,
    summary="Operator: retry the step a deal in needs_attention is parked on",
    responses=_PROBLEMS,
)
async def resume(
    deal_id: DealId,
    principal: Annotated[ApiPrincipal, Depends(require_role("operator"))],
    state: State,
    client: TemporalClient,
    # Optional: ``resume`` needs nothing but the operator, so an empty POST is enough.
    body: ResumeRequest | None = None,
) -> SignalAccepted:
    note = body.note if body is not None else None
    return await _send(
        state, client, deal_id, contract.SIGNAL_RESUME, Resume(by=principal.person, note=note)
    )


@router.post(
    "/v1/deals/{deal_id}/lost",
    status_code=202,
    summary="Mark a deal lost (voids an unsigned contract)",
    responses=_PROBLEMS,
)
async def mark_lost(
    deal_id: DealId,
    body: LostRequest,
    principal: Annotated[ApiPrincipal, Depends(require_role("sales", "operator"))],
    state: State,
    client: TemporalClient,
) -> SignalAccepted:
    return await _send(
        state,
        client,
        deal_id,
        contract.SIGNAL_MARK_LOST,
        MarkLost(by=principal.person, reason=body.reason),
    )


@router.post(
    "/v1/deals/{deal_id}/account-correction",
    summary="Operator: correct the signed legal entity of a deal parked in needs_attention",
    responses=_PROBLEMS,
)
async def correct_account(
    deal_id: DealId,
    body: CorrectionRequest,
    principal: Annotated[ApiPrincipal, Depends(require_role("operator"))],
    state: State,
    client: TemporalClient,
) -> DecisionResult:
    correction = AccountCorrection(by=principal.person, reason=body.reason, account=body.account)
    return await deals.correct_account(client, deal_id, correction)


@router.post(
    "/v1/deals/{deal_id}/cancel",
    summary="Operator: end a deal parked in needs_attention (voids an unsigned contract)",
    responses=_PROBLEMS,
)
async def cancel(
    deal_id: DealId,
    body: CancelRequest,
    principal: Annotated[ApiPrincipal, Depends(require_role("operator"))],
    state: State,
    client: TemporalClient,
) -> DecisionResult:
    return await deals.cancel(client, deal_id, Cancel(by=principal.person, reason=body.reason))
