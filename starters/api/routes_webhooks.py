"""Webhooks from DocuSign and Salesforce.

A webhook is acknowledged only once Temporal has durably recorded the start or the signal; when
Temporal is unreachable the sender gets 503 with ``Retry-After`` and delivers again later. Every
webhook is safe to deliver twice: starts are keyed by the opportunity, signatures carry a request
id derived from the envelope, and Outbound Message notification ids are remembered.
"""

from __future__ import annotations

from typing import Any, cast

import structlog
from fastapi import APIRouter, Request, Response
from pydantic import ValidationError

from integrations.docusign.webhook import (
    COMPLETED_EVENT,
    is_signed_by_any,
    parse_event,
    signature_headers,
)
from integrations.salesforce.webhook import (
    ACK,
    FlowCallout,
    OutboundMessageError,
    parse_outbound_message,
)
from qtc import deal as contract
from qtc.errors import QuoteRejected
from qtc.models import PricedQuote
from runtime.settings import Settings
from runtime.signing import SIGNATURE_HEADER, SignatureError, verify
from service import deals
from service.crm import OpportunityUnavailable, read_and_price
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


@router.post(
    "/webhooks/docusign",
    summary="DocuSign Connect (JSON SIM, HMAC): envelope completed -> signature_completed",
    responses=_PROBLEMS,
    openapi_extra=_OPAQUE_BODY,
)
async def docusign_connect(request: Request, state: State) -> dict[str, Any]:
    body = await request.body()
    secrets = [s.get_secret_value() for s in state.settings.docusign_connect_secrets]
    if not is_signed_by_any(body, signature_headers(dict(request.headers)), secrets):
        raise _unauthorized("No X-DocuSign-Signature-N header matches the body.")
    _require_json(request)
    try:
        event = parse_event(body)
    except ValidationError as err:
        raise Problem(
            400, "malformed-event", f"Not a Connect event: {err.error_count()} problem(s)."
        ) from err
    if event.event != COMPLETED_EVENT:
        return {"status": "ignored", "event": event.event}
    signature = event.signature()
    opportunity_id = event.custom_field("opportunity_id")
    deal_id = event.custom_field("deal_id") or (
        contract.deal_id_for(opportunity_id) if opportunity_id else None
    )
    if deal_id is None:
        raise Problem(
            404,
            "unknown-envelope",
            f"Envelope {event.data.envelope_id} has no opportunity_id or deal_id custom field; "
            "it was not sent by this product.",
        )
    if signature is None:
        raise Problem(422, "malformed-event", "The completed envelope has no completedDateTime.")
    client = await state.temporal.client()
    try:
        await deals.record_signature(client, deal_id, signature, rpc_timeout=state.rpc_timeout)
    except deals.DealFinished:
        # Redelivered after the deal closed: nothing left to change, and a retry cannot help.
        return {"status": "ignored", "reason": "deal finished", "deal_id": deal_id}
    log.info("signature_signalled", deal_id=deal_id, envelope_id=signature.envelope_id)
    return {"status": "accepted", "deal_id": deal_id, "envelope_id": signature.envelope_id}


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
    if message.organization_id not in state.settings.salesforce_org_ids:
        raise Problem(
            403, "unknown-organization", "Outbound Messages from this organization are refused."
        )
    started: list[str] = []
    refused: list[dict[str, str]] = []
    for notification in message.notifications:
        if notification.notification_id in state.outbound_seen:
            continue
        opportunity_id = notification.closed_won_opportunity
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
        deals=started,
        refused=refused,
        notifications=len(message.notifications),
    )
    return Response(ACK, media_type="text/xml")
