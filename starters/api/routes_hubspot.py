"""The HubSpot webhook: a deal moved into a start stage starts its deal.

HubSpot posts batches of events signed with ``X-HubSpot-Signature-v3`` (verified in
``integrations.hubspot.webhook``; forged, stale and malformed requests are refused before anything
is read). Each ``deal.propertyChange`` of ``dealstage`` into ``QTC_HUBSPOT_START_STAGES`` reads the
deal from HubSpot, prices it and starts it; other events are acknowledged and ignored. The answer
lists every event's outcome: ``started``, ``joined`` (already running), ``duplicate`` (an event id
already handled), ``ignored`` or ``refused`` with the reason; a deal refused because of its data
(a CPQ rule, a missing property) also gets a note on the HubSpot deal saying why, so the
salesperson sees it where they work.

The request is answered 200 only once every start in it is durable in Temporal. When Temporal or
HubSpot cannot be reached the answer is 503 with ``Retry-After``: HubSpot delivers the whole batch
again, and the events already started are joined, not started twice.
"""

from __future__ import annotations

from typing import Any, cast

import structlog
from fastapi import APIRouter, Request

from integrations.hubspot.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    HubSpotEvent,
    MalformedEvents,
    WebhookSignatureError,
    parse_events,
    signed_uri,
    verify_v3,
)
from qtc import cpq
from qtc import deal as contract
from qtc.errors import QuoteRejected
from qtc.ports import CrmReader
from service import deals
from service.crm import OpportunityUnavailable, note_refusal, read_and_price
from starters.api.problems import Problem, is_json, problem_schema
from starters.api.state import ApiState, State

router = APIRouter(tags=["webhooks"])
log = structlog.get_logger("qtc.api.webhooks.hubspot")

STARTED_BY = "hubspot-webhook:dealstage"


def _unavailable(state: ApiState, what: str) -> Problem:
    return Problem(
        503,
        "crm-unavailable",
        f"{what}; nothing was lost: deliver the batch again later.",
        headers={"Retry-After": str(state.settings.api_retry_after_s)},
    )


@router.post(
    "/webhooks/hubspot",
    summary="HubSpot webhooks (v3 signature): a deal entering a start stage starts its deal",
    responses={code: problem_schema() for code in (400, 401, 404, 409, 413, 415, 503)},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "array", "items": {"type": "object"}}}
            },
        }
    },
)
async def hubspot_webhook(request: Request, state: State) -> dict[str, Any]:
    settings = state.settings
    body = await request.body()
    try:
        verify_v3(
            [settings.hubspot_client_secret.get_secret_value()],
            method=request.method,
            uri=signed_uri(settings.api_public_url, request.url.path, request.url.query),
            body=body,
            signature=request.headers.get(SIGNATURE_HEADER),
            timestamp=request.headers.get(TIMESTAMP_HEADER),
            tolerance_s=settings.hubspot_webhook_tolerance_s,
        )
    except WebhookSignatureError as err:
        raise Problem(401, "invalid-signature", str(err)) from err
    if not is_json(request.headers.get("content-type")):
        raise Problem(415, "unsupported-media-type", "This webhook accepts application/json only.")
    try:
        events = parse_events(body)
    except MalformedEvents as err:
        raise Problem(400, "malformed-event", str(err)) from err
    crm = state.hubspot
    if crm is None:
        raise Problem(
            404,
            "hubspot-not-configured",
            "HubSpot is not this deployment's CRM: set QTC_CRM=hubspot, or QTC_HUBSPOT_TASK_QUEUE "
            "to serve it beside another CRM.",
        )
    results = []
    for event in events:
        key = str(event.event_id)
        if key in state.hubspot_seen:
            results.append(_outcome(event, "duplicate"))
            continue
        if event.starts_deal(settings.hubspot_start_stages):
            results.append(await _start(state, crm, event))
        else:
            results.append(_outcome(event, "ignored"))
        # Remembered only once handled: a batch answered 503 is delivered again in full.
        state.hubspot_seen.add(key)
    log.info(
        "hubspot_webhook_handled",
        events=len(events),
        outcomes=[(r["objectId"], r["status"]) for r in results],
    )
    return {"results": results}


def _outcome(event: HubSpotEvent, status: str, **extra: Any) -> dict[str, Any]:
    return {"eventId": event.event_id, "objectId": event.object_id, "status": status, **extra}


async def _start(state: ApiState, crm: CrmReader, event: HubSpotEvent) -> dict[str, Any]:
    deal_id = str(event.object_id)
    try:
        priced = await read_and_price(crm, state.catalog, deal_id)
    except QuoteRejected as rejected:
        violations = cpq.violations_to_json(rejected.violations)["errors"]
        reason = "The quote breaks CPQ rules:\n" + "\n".join(
            f"{v['pointer']}: {v['code']}: {v['message']}" for v in violations
        )
        note = await _note(state, crm, deal_id, reason)
        return _outcome(event, "refused", reason="quote-rejected", errors=violations, note_id=note)
    except OpportunityUnavailable as err:
        if err.reason == "unavailable":
            raise _unavailable(state, f"HubSpot could not be read: {err}") from err
        note = None
        if err.reason == "not_quotable":
            note = await _note(state, crm, deal_id, str(err))
        return _outcome(event, "refused", reason=err.reason, detail=str(err), note_id=note)
    settings = state.settings
    if settings.crm != "hubspot" and settings.hubspot_task_queue:
        settings = settings.model_copy(
            update={"crm": "hubspot", "temporal_task_queue": settings.hubspot_task_queue}
        )
    client = await state.temporal.client()
    try:
        result = await deals.start_deal(
            client,
            settings,
            priced,
            phase=cast(contract.Phase, settings.api_default_phase),
            started_by=STARTED_BY,
        )
    except deals.DealConflict as err:
        return _outcome(event, "refused", reason="conflict", detail=str(err))
    return _outcome(event, "started" if result.created else "joined", deal_id=result.deal_id)


async def _note(state: ApiState, crm: CrmReader, deal_id: str, reason: str) -> str | None:
    """Leave the refusal on the HubSpot deal; a HubSpot that cannot be reached is retried."""
    try:
        return await note_refusal(crm, deal_id, reason)
    except OpportunityUnavailable as err:
        if err.reason == "unavailable":
            raise _unavailable(state, f"HubSpot could not take the note: {err}") from err
        log.warning("hubspot_note_refused", deal=deal_id, error=str(err))
        return None
