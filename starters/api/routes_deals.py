"""``/v1/deals``: start, inspect, list and steer deals.

Who did something is always the token's person: bodies carry decisions and notes, never names.
A decision is answered once the deal has taken it: 200 with the stage it led to, or 409 with the
deal's ``current_stage`` and the reason when the deal refused it (nothing is recorded then).
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
from qtc.ports import LedgerEvent
from runtime.settings import ApiPrincipal
from service import deals
from service.amendments import start_amendment
from starters.api.auth import authenticated, require_role
from starters.api.pricing import price_or_reject, rejected_problem
from starters.api.problems import Problem, problem_schema
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


class DecisionTaken(BaseModel):
    deal_id: str
    decision: str
    stage: Stage = Field(description="The stage the decision led the deal to")


class DealEvents(BaseModel):
    events: list[LedgerEvent]


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
    try:
        result = await deals.start_deal(
            client,
            state.settings,
            priced,
            phase=body.phase,
            started_by=principal.person,
            opportunities=state.opportunities,
        )
    except deals.OpportunityUnavailable as err:
        raise opportunity_problem(state.settings.crm, err) from err
    response.status_code = 201 if result.created else 200
    response.headers["Location"] = f"/v1/deals/{result.deal_id}"
    return StartDealResponse(deal_id=result.deal_id, created=result.created, status=priced.status)


def opportunity_problem(crm: str, err: deals.OpportunityUnavailable) -> Problem:
    """Why a quote's deal was not started: its opportunity is not in the CRM (422, pointing at
    ``/opportunity_id``), or the CRM could not be asked (503, retry) or refused (502)."""
    if err.reason in ("not_found", "not_quotable"):
        return Problem(
            422,
            "opportunity-not-in-crm",
            str(err),
            errors=[
                {"pointer": "/opportunity_id", "code": "unknown_opportunity", "message": str(err)}
            ],
        )
    if err.reason == "unavailable":
        return Problem(
            503,
            "crm-unavailable",
            f"The CRM ({crm}) could not be asked whether it holds the opportunity; nothing was "
            "started. Retry later.",
            headers={"Retry-After": "30"},
        )
    return Problem(502, "crm-refused", f"The CRM ({crm}) refused the read: {err}")


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


@router.get(
    "/v1/deals/{deal_id}/events",
    summary="A deal's ledger: every stage, decision, external id and invoice total, oldest first",
    responses=_PROBLEMS,
)
async def deal_events(
    deal_id: DealId,
    _: Annotated[ApiPrincipal, Depends(authenticated)],
    state: State,
) -> DealEvents:
    return DealEvents(events=await deals.deal_events(state.settings, deal_id))


async def _send(
    state: State, client: TemporalClient, deal_id: str, decision: str, model: BaseModel
) -> DecisionTaken:
    taken = await deals.decide(client, deal_id, decision, model, rpc_timeout=state.rpc_timeout)
    return DecisionTaken(deal_id=deal_id, decision=decision, stage=taken.stage)


@router.post(
    "/v1/deals/{deal_id}/quote-approval",
    status_code=200,
    summary="Deal desk: approve or reject a quote that needs approval",
    responses=_PROBLEMS,
)
async def quote_approval(
    deal_id: DealId,
    body: Decision,
    principal: Annotated[ApiPrincipal, Depends(require_role("deal_desk"))],
    state: State,
    client: TemporalClient,
) -> DecisionTaken:
    decision = (
        contract.UPDATE_APPROVE_QUOTE
        if body.decision == "approve"
        else contract.UPDATE_REJECT_QUOTE
    )
    return await _send(
        state, client, deal_id, decision, QuoteDecision(by=principal.person, note=body.note)
    )


@router.post(
    "/v1/deals/{deal_id}/invoice-review",
    status_code=200,
    summary="Finance: approve or reject the first invoice (phase 2)",
    responses=_PROBLEMS,
)
async def invoice_review(
    deal_id: DealId,
    body: Decision,
    principal: Annotated[ApiPrincipal, Depends(require_role("finance"))],
    state: State,
    client: TemporalClient,
) -> DecisionTaken:
    decision = (
        contract.UPDATE_APPROVE_INVOICE
        if body.decision == "approve"
        else contract.UPDATE_REJECT_INVOICE
    )
    return await _send(
        state, client, deal_id, decision, InvoiceReview(reviewer=principal.person, note=body.note)
    )


@router.post(
    "/v1/deals/{deal_id}/resume",
    status_code=200,
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
) -> DecisionTaken:
    note = body.note if body is not None else None
    return await _send(
        state, client, deal_id, contract.UPDATE_RESUME, Resume(by=principal.person, note=note)
    )


@router.post(
    "/v1/deals/{deal_id}/lost",
    status_code=200,
    summary="Mark a deal lost (voids an unsigned contract)",
    responses=_PROBLEMS,
)
async def mark_lost(
    deal_id: DealId,
    body: LostRequest,
    principal: Annotated[ApiPrincipal, Depends(require_role("sales", "operator"))],
    state: State,
    client: TemporalClient,
) -> DecisionTaken:
    return await _send(
        state,
        client,
        deal_id,
        contract.UPDATE_MARK_LOST,
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
