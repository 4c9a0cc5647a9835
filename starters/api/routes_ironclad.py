"""The Ironclad webhook: a signed contract becomes the deal's ``signature_completed`` signal.

Order of checks: the verification header against Ironclad's RSA key (401 when missing, forged or
signed by another key); then the event id (a redelivery of an event already acted on is answered
200 at once); then the event: only a workflow this product launched (it carries the deal id) that
is completed with a signature moves a deal; every other event is answered 200 and ignored, since a
retry would not change it. The signal is sent with a request id derived from the workflow, so the
fully-signed and completed events of one workflow record one signal. When Ironclad (to read the
key or the workflow) or Temporal cannot be reached, the answer is 503 with ``Retry-After``, and
Ironclad delivers again.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import structlog
from fastapi import APIRouter, Request
from pydantic import ValidationError

from integrations.ironclad.client import IroncladApi, IroncladHttpError, build_ironclad_api
from integrations.ironclad.webhook import (
    SIGNED_EVENTS,
    VerificationError,
    WebhookVerifier,
    parse_event,
    signed_contract,
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


class IroncladWebhooks:
    """What the route keeps between requests: the API client, the key cache, seen event ids."""

    def __init__(self, settings: Settings) -> None:
        self.api: IroncladApi = build_ironclad_api(settings)
        self.verifier = WebhookVerifier(
            self.api.verification_key, min_refetch_s=settings.ironclad_key_refetch_s
        )
        self.seen = RecentIds(settings.api_outbound_dedupe_size)
        self.signer_role = settings.ironclad_signer_role


def _context(request: Request, settings: Settings) -> IroncladWebhooks:
    # Built on first use, on the server's event loop that the client's connections belong to.
    context: IroncladWebhooks | None = getattr(request.app.state, "ironclad_webhooks", None)
    if context is None:
        context = IroncladWebhooks(settings)
        request.app.state.ironclad_webhooks = context
    return context


def _ironclad_unavailable(settings: Settings, err: Exception) -> Problem:
    log.warning("ironclad_unreachable", error=f"{type(err).__name__}: {err}")
    return Problem(
        503,
        "ironclad-unavailable",
        "Ironclad could not be read to check this event; deliver it again later.",
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
        event_id = await context.verifier.verify(dict(request.headers), body)
    except VerificationError as err:
        raise Problem(401, "invalid-signature", str(err)) from err
    except (IroncladHttpError, httpx.HTTPError) as err:
        raise _ironclad_unavailable(settings, err) from err
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
        signed = await signed_contract(context.api, workflow_id, signer_role=context.signer_role)
    except IroncladHttpError as err:
        if err.status == 404:
            # Not a workflow this account can see: not one this product launched.
            return {"status": "ignored", "reason": "unknown workflow", "workflow_id": workflow_id}
        raise _ironclad_unavailable(settings, err) from err
    except httpx.HTTPError as err:
        raise _ironclad_unavailable(settings, err) from err
    if signed is None:
        context.seen.add(event_id)
        return {
            "status": "ignored",
            "reason": "not a signed contract of ours",
            "workflow_id": workflow_id,
        }
    client = await state.temporal.client()
    try:
        await deals.signal(
            client,
            signed.deal_id,
            contract.SIGNAL_SIGNATURE_COMPLETED,
            signed.signature,
            request_id=deals.signal_request_id(signed.deal_id, f"signature:{workflow_id}"),
            rpc_timeout=timedelta(seconds=settings.api_temporal_timeout_s),
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
