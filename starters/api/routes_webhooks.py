"""Webhooks from DocuSign and Salesforce.

A webhook is acknowledged only once Temporal has durably recorded the start or the signal; when
Temporal is unreachable the sender gets 503 with ``Retry-After`` and delivers again later. Every
webhook is safe to deliver twice: starts are keyed by the opportunity, signatures carry a request
id derived from the envelope, and Outbound Message notification ids are remembered.
"""

from __future__ import annotations

from typing import Any, Literal, cast

import structlog
from fastapi import APIRouter, Request, Response
from pydantic import ValidationError

from integrations.docusign.webhook import (
    ConnectMessageError,
    is_signed_by_any,
    parse_message,
    signature_headers,
)
from integrations.salesforce.webhook import (
    ACK,
    FlowCallout,
    OutboundMessageError,
    OutboundNotification,
    org_id_allowed,
    parse_outbound_message,
)
from qtc import deal as contract
from qtc.errors import QuoteRejected
from qtc.models import PricedQuote
from runtime.settings import Settings
from runtime.signing import SIGNATURE_HEADER, SignatureError, verify
from service import deals, esign
from service.crm import OpportunityUnavailable, is_closed_won, read_and_price
from starters.api.pricing import rejected_problem
from starters.api.problems import Problem, is_json, problem_schema
from starters.api.state import ApiState, State

router = APIRouter(tags=["webhooks"])
log = structlog.get_logger("qtc.api.webhooks")

_PROBLEMS: dict[int | str, dict[str, Any]] = {
    code: problem_schema() for code in (400, 401, 403, 404, 409, 413, 415, 422, 502, 503)
}
_OPAQUE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}


def _require_json(request: Request) -> None:
    if not is_json(request.headers.get("content-type")):
        raise Problem(415, "unsupported-media-type", "This webhook accepts application/json only.")


def _unauthorized(detail: str) -> Problem:
    return Problem(401, "invalid-signature", detail)


# --- DocuSign Connect ------------------------------------------------------------------------

_CONNECT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "text/xml": {"schema": {"type": "string"}},
        },
    }
}


def _connect_format(content_type: str | None) -> Literal["json", "xml"]:
    if is_json(content_type):
        return "json"
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in {"text/xml", "application/xml"} or media.endswith("+xml"):
        return "xml"
    raise Problem(
        415,
        "unsupported-media-type",
        "Connect messages are accepted as application/json (JSON SIM) or text/xml (legacy).",
    )


@router.post(
    "/webhooks/docusign",
    summary="DocuSign Connect (JSON SIM or legacy XML, HMAC): envelope completed -> signature",
    responses={
        200: {"description": "Recorded (`accepted`), or not this product's (`ignored`)"},
        **_PROBLEMS,
    },
    openapi_extra=_CONNECT_BODY,
)
async def docusign_connect(request: Request, state: State) -> dict[str, Any]:
    """Record the signature of a completed envelope on its deal.

    Every format a Connect configuration can send is read: JSON SIM with or without the envelope
    summary, and the legacy XML. What the message does not carry (the deal, the completion time,
    the signer) is read from DocuSign by the envelope id (``service.esign``). An envelope this
    product did not send is answered 200 ``ignored``: DocuSign would retry any other answer for
    days. A failed read or an unreachable Temporal is 503, so DocuSign delivers again.
    """
    body = await request.body()
    secrets = [s.get_secret_value() for s in state.settings.docusign_connect_secrets]
    if not is_signed_by_any(body, signature_headers(dict(request.headers)), secrets):
        raise _unauthorized("No X-DocuSign-Signature-N header matches the body.")
    try:
        message = parse_message(body, _connect_format(request.headers.get("content-type")))
    except ConnectMessageError as err:
        raise Problem(400, "malformed-event", f"Not a Connect message: {err}") from err
    if not message.completed:
        return {"status": "ignored", "event": message.event}
    client = await state.temporal.client()
    try:
        outcome = await esign.record_completed_contract(
            client,
            state.contracts,
            esign.ContractCompleted(
                contract_id=message.envelope_id,
                deal_id=message.deal_id(),
                carries_fields=message.custom_fields is not None,
                completed_at=message.completed_at,
                signer_name=message.signer_name,
                signer_email=message.signer_email,
            ),
            rpc_timeout=state.rpc_timeout,
        )
    except esign.ContractUnreadable as err:
        raise Problem(
            503,
            "esign-unavailable",
            f"{err} Nothing was recorded; deliver again later.",
            headers={"Retry-After": str(state.settings.api_retry_after_s)},
        ) from err
    answer: dict[str, Any] = {"status": outcome.status, "envelope_id": outcome.contract_id}
    if outcome.deal_id is not None:
        answer["deal_id"] = outcome.deal_id
    if outcome.reason is not None:
        answer["reason"] = outcome.reason
    return answer


# --- Salesforce --------------------------------------------------------------------------------


async def _read_and_price(state: ApiState, opportunity_id: str) -> PricedQuote:
    """Read the opportunity from the CRM and price it, or answer why not as a problem."""
    try:
        return await read_and_price(state.crm, state.catalog, opportunity_id)
    except QuoteRejected as rejected:
        raise rejected_problem(rejected) from rejected
    except OpportunityUnavailable as err:
        raise _crm_problem(state.crm.name, err) from err


def _crm_problem(crm: str, err: OpportunityUnavailable) -> Problem:
    if err.reason == "not_found":
        return Problem(404, "unknown-opportunity", str(err))
    if err.reason == "not_quotable":
        return Problem(422, "opportunity-not-quotable", str(err))
    if err.reason == "unavailable":
        return Problem(
            503,
            "crm-unavailable",
            f"The CRM ({crm}) could not be read; nothing was started. Retry later.",
            headers={"Retry-After": "30"},
        )
    return Problem(502, "crm-refused", f"The CRM ({crm}) refused the read: {err}")


async def _start(state: ApiState, priced: PricedQuote, phase: contract.Phase, by: str) -> Any:
    client = await state.temporal.client()
    return await deals.start_deal(client, state.settings, priced, phase=phase, started_by=by)


@router.post(
    "/webhooks/salesforce",
    summary="Salesforce Flow callout (HMAC): closed_won / quote_approved -> start the deal",
    responses={200: {"description": "The deal already existed"}, **_PROBLEMS},
    status_code=201,
    openapi_extra=_OPAQUE_BODY,
)
async def salesforce_callout(request: Request, response: Response, state: State) -> dict[str, Any]:
    body = await request.body()
    settings: Settings = state.settings
    try:
        verify(
            settings.salesforce_callout_secret.get_secret_value(),
            body,
            request.headers.get(SIGNATURE_HEADER),
            tolerance_s=settings.salesforce_callout_tolerance_s,
        )
    except SignatureError as err:
        raise _unauthorized(str(err)) from err
    _require_json(request)
    try:
        callout = FlowCallout.model_validate_json(body)
    except ValidationError as err:
        raise Problem(
            422,
            "invalid-callout",
            "The callout body is not {event, opportunity_id, phase?}.",
            errors=[
                {
                    "pointer": "/" + "/".join(str(p) for p in e["loc"]),
                    "code": "invalid_field",
                    "message": e["msg"],
                }
                for e in err.errors()
            ],
        ) from err
    priced = await _read_and_price(state, callout.opportunity_id)
    phase = callout.phase or cast(contract.Phase, settings.api_default_phase)
    result = await _start(state, priced, phase, f"salesforce-flow:{callout.event}")
    response.status_code = 201 if result.created else 200
    log.info("deal_started_by_flow", deal_id=result.deal_id, created=result.created)
    return {"deal_id": result.deal_id, "created": result.created}


@router.post(
    "/webhooks/salesforce/outbound-message",
    summary="Salesforce Outbound Message (SOAP): Opportunity Closed Won -> start the deal",
    responses={
        200: {"description": "Acknowledged", "content": {"text/xml": {}}},
        **_PROBLEMS,
    },
    response_class=Response,
    openapi_extra={
        "requestBody": {"required": True, "content": {"text/xml": {"schema": {"type": "string"}}}}
    },
)
async def salesforce_outbound_message(request: Request, state: State) -> Response:
    try:
        message = parse_outbound_message(await request.body())
    except OutboundMessageError as err:
        raise Problem(400, "malformed-outbound-message", str(err)) from err
    if not org_id_allowed(message.organization_id, state.settings.salesforce_org_ids):
        raise Problem(
            403, "unknown-organization", "Outbound Messages from this organization are refused."
        )
    started: list[str] = []
    refused: list[dict[str, str]] = []
    for notification in message.notifications:
        if notification.notification_id in state.outbound_seen:
            continue
        opportunity_id = await _closed_won(state, notification, refused)
        if opportunity_id is not None:
            try:
                priced = await _read_and_price(state, opportunity_id)
                phase = cast(contract.Phase, state.settings.api_default_phase)
                result = await _start(state, priced, phase, "salesforce-outbound-message")
                started.append(result.deal_id)
            except (Problem, deals.DealConflict) as err:
                status = err.status if isinstance(err, Problem) else 409
                if status >= 500:
                    raise  # Temporal or Salesforce unavailable: no Ack, Salesforce retries
                # This opportunity can never start as it is (bad quote, unknown, conflicting):
                # retrying the whole message would only block the notifications after it.
                refused.append({"opportunity_id": opportunity_id, "reason": str(err)})
        # Remembered only once handled: a notification that failed is retried by Salesforce.
        state.outbound_seen.add(notification.notification_id)
    log.info(
        "outbound_message_acked",
        organization_id=message.organization_id,
        deals=started,
        refused=refused,
        notifications=len(message.notifications),
    )
    return Response(ACK, media_type="text/xml")


async def _closed_won(
    state: ApiState, notification: OutboundNotification, refused: list[dict[str, str]]
) -> str | None:
    """The opportunity id when the notification is about an opportunity that is Closed Won.

    A message whose field selection leaves ``StageName`` out is decided on the stage read from
    Salesforce: acknowledging it unread would drop a Closed Won for good. When the stage cannot
    be read now, nothing is acknowledged and Salesforce delivers the message again.
    """
    if not notification.needs_stage:
        return notification.closed_won_opportunity
    opportunity_id = notification.opportunity_id
    assert opportunity_id is not None
    stages = state.opportunity_stages
    if stages is None:
        log.error("outbound_stage_unreadable", opportunity_id=opportunity_id)
        raise Problem(
            503,
            "stage-unknown",
            "The Outbound Message does not send StageName and this CRM reader cannot read it; "
            "add StageName to the message's fields. Not acknowledged.",
            headers={"Retry-After": str(state.settings.api_retry_after_s)},
        )
    try:
        won = await is_closed_won(stages, opportunity_id)
    except OpportunityUnavailable as err:
        problem = _crm_problem(state.crm.name, err)
        if problem.status >= 500:
            raise problem from err
        refused.append({"opportunity_id": opportunity_id, "reason": str(err)})
        return None
    log.info("outbound_stage_read", opportunity_id=opportunity_id, closed_won=won)
    return opportunity_id if won else None
