"""The Ironclad webhook: a signed contract becomes the deal's ``signature_completed`` signal.

Order of checks: the verification header against Ironclad's RSA key (401 when missing, forged or
signed by another key); then the event id (a redelivery of an event already acted on is answered
200 at once); then the event: only a workflow this product launched (it carries the deal id) that
is completed with a signature moves a deal; every other event is answered 200 and ignored, since a
retry would not change it. The signal is sent with a request id derived from the workflow, so the
fully-signed and completed events of one workflow record one signal. When Ironclad (for its key or
the workflow) or Temporal cannot be reached, the answer is 503 with ``Retry-After``, and Ironclad
delivers again.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import APIRouter, Request
from pydantic import ValidationError

from integrations.ironclad.webhook import (
    SIGNED_EVENTS,
    IroncladUnreachable,
    IroncladWebhooks,
    VerificationError,
    parse_event,
)
from qtc import deal as contract
from runtime.settings import Settings
from service import deals
from starters.api.problems import Problem, is_json, problem_schema
from starters.api.state import RecentIds, State

router = APIRouter(tags=["webhooks"])
log = structlog.get_logger("qtc.api.webhooks")

_PROBLEMS: dict[int | str, dict[str, Any]] = {
    code: problem_schema() for code in (400, 401, 413, 415, 503)
}


class _Context:
    def __init__(self, settings: Settings) -> None:
        self.ironclad = IroncladWebhooks(settings)
        self.seen = RecentIds(settings.api_outbound_dedupe_size)


def _context(request: Request, settings: Settings) -> _Context:
    # Built on first use, on the server's event loop that the client's connections belong to.
    context: _Context | None = getattr(request.app.state, "ironclad_webhooks", None)
    if context is None:
        context = _Context(settings)
        request.app.state.ironclad_webhooks = context
    return context


def _unavailable(settings: Settings, err: IroncladUnreachable) -> Problem:
    log.warning("ironclad_unreachable", error=str(err))
    return Problem(
        503,
        "ironclad-unavailable",
        "Ironclad could not be asked to check this event; deliver it again later.",
        headers={"Retry-After": str(settings.api_retry_after_s)},
    )


@router.post(
    "/webhooks/ironclad",
    summary="Ironclad webhook (RSA-verified): a signed workflow -> signature_completed",
    responses=_PROBLEMS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def ironclad_webhook(request: Request, state: State) -> dict[str, Any]:
    settings = state.settings
    body = await request.body()
    context = _context(request, settings)
    try:
        event_id = await context.ironclad.verify(dict(request.headers), body)
    except VerificationError as err:
        raise Problem(401, "invalid-signature", str(err)) from err
    except IroncladUnreachable as err:
        raise _unavailable(settings, err) from err
    if not is_json(request.headers.get("content-type")):
        raise Problem(415, "unsupported-media-type", "This webhook accepts application/json only.")
    if event_id in context.seen:
        return {"status": "duplicate", "event_id": event_id}
    try:
        event = parse_event(body)
    except ValidationError as err:
        raise Problem(
            400, "malformed-event", f"Not an Ironclad event: {err.error_count()} problem(s)."
        ) from err
    workflow_id = event.payload.workflow_id
    if event.payload.event not in SIGNED_EVENTS or not workflow_id:
        return {"status": "ignored", "event": event.payload.event}
    try:
        signed = await context.ironclad.signed_contract(workflow_id)
    except IroncladUnreachable as err:
        raise _unavailable(settings, err) from err
    if signed is None:
        context.seen.add(event_id)
        return {"status": "ignored", "reason": "not a signed contract of this product's"}
    client = await state.temporal.client()
    try:
        await deals.signal(
            client,
            signed.deal_id,
            contract.SIGNAL_SIGNATURE_COMPLETED,
            signed.signature,
            request_id=deals.signal_request_id(signed.deal_id, f"signature:{workflow_id}"),
            rpc_timeout=state.rpc_timeout,
        )
    except (deals.DealFinished, deals.DealNotFound):
        # Redelivered after the deal closed (or its history is gone): nothing left to change.
        context.seen.add(event_id)
        return {"status": "ignored", "reason": "deal finished", "deal_id": signed.deal_id}
    context.seen.add(event_id)
    log.info(
        "signature_signalled", deal_id=signed.deal_id, envelope_id=workflow_id, event_id=event_id
    )
    return {"status": "accepted", "deal_id": signed.deal_id, "envelope_id": workflow_id}
