"""``POST /webhooks/ironclad`` in the API: what it answers when Temporal or Ironclad cannot be
reached, for events that are not a signed contract of ours, and for redeliveries."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from temporalio.client import Client

from integrations.ironclad.client import IroncladApi
from integrations.ironclad.mapping import launch_attributes
from qtc.models import PricedQuote
from runtime.temporal import connect
from starters.api.app import create_app
from tests.api.support import api_settings
from tests.ironclad.conftest import CREATOR, TEMPLATE, Receiver
from tests.stack_support import free_port


def genuine(receiver: Receiver, workflow_id: str, event: str) -> dict[str, Any]:
    """The request the emulator delivered for ``event`` of ``workflow_id``, to be replayed."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with receiver.lock:
            for request in receiver.received:
                if workflow_id.encode() in request["body"] and event.encode() in request["body"]:
                    return request
        time.sleep(0.01)
    raise AssertionError(f"no {event} delivered for {workflow_id}")


def replay(request: dict[str, Any]) -> dict[str, str]:
    keep = ("content-type", "x-ironclad-webhook-event-id", "x-ironclad-webhook-verification")
    return {k: v for k, v in request["headers"].items() if k in keep}


def app_for(tmp_path: Path, ironclad_url: str) -> FastAPI:
    settings = api_settings(
        "unused",
        tmp_path,
        temporal_address=f"127.0.0.1:{free_port()}",
        api_temporal_timeout_s=1.0,
        ironclad_base_url=ironclad_url,
    )

    async def nowhere() -> Client:
        return await connect(settings)

    return create_app(settings, client_factory=nowhere)


async def asgi_post(app: FastAPI, request: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://qtc.test"
    ) as api:
        return await api.post(
            "/webhooks/ironclad", content=request["body"], headers=replay(request)
        )


async def test_a_signed_contract_gets_503_with_retry_after_while_temporal_is_unreachable(
    tmp_path: Path, ironclad_url: str, api: IroncladApi, priced: PricedQuote, receiver: Receiver
) -> None:
    workflow = await api.launch_workflow(
        TEMPLATE, launch_attributes("deal-down", priced), creator_email=CREATOR
    )
    httpx.post(f"{ironclad_url}/_sandbox/workflows/{workflow['id']}/sign").raise_for_status()
    request = genuine(receiver, workflow["id"], "workflow_completed")
    app = app_for(tmp_path, ironclad_url)
    first = await asgi_post(app, request)
    again = await asgi_post(app, request)
    assert (first.status_code, again.status_code) == (503, 503)
    assert first.headers["retry-after"] == "7"


async def test_a_foreign_or_unsigned_workflow_is_acknowledged_and_ignored_once(
    tmp_path: Path, ironclad_url: str, api: IroncladApi, priced: PricedQuote, receiver: Receiver
) -> None:
    attributes = launch_attributes("unused", priced)
    del attributes["qtcDealId"]
    theirs = await api.launch_workflow(TEMPLATE, attributes, creator_email=CREATOR)
    httpx.post(f"{ironclad_url}/_sandbox/workflows/{theirs['id']}/sign").raise_for_status()
    app = app_for(tmp_path, ironclad_url)
    request = genuine(receiver, theirs["id"], "workflow_completed")
    first = await asgi_post(app, request)
    assert (first.status_code, first.json()["status"]) == (200, "ignored")
    again = await asgi_post(app, request)
    assert again.json() == {
        "status": "duplicate",
        "event_id": replay(request)["x-ironclad-webhook-event-id"],
    }
    launched = genuine(receiver, theirs["id"], "workflow_launched")
    assert (await asgi_post(app, launched)).json() == {
        "status": "ignored",
        "event": "workflow_launched",
    }


async def test_an_unreachable_ironclad_gets_503_not_401(
    tmp_path: Path, ironclad_url: str, api: IroncladApi, priced: PricedQuote, receiver: Receiver
) -> None:
    workflow = await api.launch_workflow(
        TEMPLATE, launch_attributes("deal-x", priced), creator_email=CREATOR
    )
    request = genuine(receiver, workflow["id"], "workflow_launched")
    response = await asgi_post(app_for(tmp_path, f"http://127.0.0.1:{free_port()}"), request)
    assert response.status_code == 503
    assert response.json()["type"].endswith("ironclad-unavailable")
