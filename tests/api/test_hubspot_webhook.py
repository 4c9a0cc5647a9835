"""``POST /webhooks/hubspot``: signed batches of HubSpot events start deals read from the HubSpot
emulator (through the real SDK and the HubSpot CRM integration); forged, stale and malformed
requests are refused; duplicates change nothing; a deal whose quote breaks a rule is refused with a
note on the HubSpot deal; Temporal or HubSpot unreachable answers 503 and loses nothing."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from hubspot import HubSpot
from hubspot.utils.signature import Signature
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from integrations.hubspot.activities import HubSpotCrm
from integrations.hubspot.client import build_hubspot_client
from qtc.ports import ACT_SEND_CONTRACT
from runtime.settings import Settings
from sandbox.hubspot.app import SANDBOX_CLIENT_SECRET, SANDBOX_TOKEN
from sandbox.hubspot.app import create_app as hubspot_app
from sandbox.hubspot.seed import seed_deal
from sandbox.stripe.testing import serve_app
from starters.api import create_app
from tests.api.support import api_settings, wait_for_stage
from tests.workflows.support import FakeVendors

PUBLIC_URL = "http://127.0.0.1:8000"
HOOK = f"{PUBLIC_URL}/webhooks/hubspot"
_event_ids = itertools.count(int(time.time() * 1000))


@pytest.fixture(scope="module")
def hubspot_url() -> Iterator[str]:
    with serve_app(hubspot_app()) as url:
        HubSpotCrm(build_hubspot_client(SANDBOX_TOKEN, url)).ensure_schema(create=True)
        yield url


@pytest.fixture
def hs(hubspot_url: str) -> HubSpot:
    return HubSpot(access_token=SANDBOX_TOKEN, host=hubspot_url)


@pytest.fixture
def hubspot_settings(task_queue: str, tmp_path: Path, hubspot_url: str) -> Settings:
    return api_settings(
        task_queue,
        tmp_path,
        crm="hubspot",
        hubspot_api_base=hubspot_url,
        api_public_url=PUBLIC_URL,
    )


@pytest.fixture
def hubspot_api_app(
    hubspot_settings: Settings, env: WorkflowEnvironment, hubspot_url: str
) -> FastAPI:
    async def same_client() -> Client:
        return env.client

    crm = HubSpotCrm(build_hubspot_client(SANDBOX_TOKEN, hubspot_url))
    return create_app(hubspot_settings, client_factory=same_client, crm=crm)


@pytest_asyncio.fixture
async def hook(hubspot_api_app: FastAPI, worker: Worker) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=hubspot_api_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://qtc.test") as client:
        yield client


def stage_event(deal_id: str, stage: str = "contractsent", **extra: Any) -> dict[str, Any]:
    return {
        "eventId": next(_event_ids),
        "subscriptionId": 3000001,
        "portalId": 24000001,
        "appId": 2000001,
        "occurredAt": int(time.time() * 1000),
        "subscriptionType": "deal.propertyChange",
        "attemptNumber": 0,
        "objectId": int(deal_id),
        "propertyName": "dealstage",
        "propertyValue": stage,
        "changeSource": "CRM_UI",
        **extra,
    }


def signed(
    events: list[dict[str, Any]] | bytes,
    *,
    secret: str = SANDBOX_CLIENT_SECRET,
    uri: str = HOOK,
    at_ms: int | None = None,
) -> tuple[bytes, dict[str, str]]:
    """The body and headers HubSpot sends, signed by the SDK's own v3 implementation."""
    body = events if isinstance(events, bytes) else json.dumps(events).encode()
    timestamp = str(at_ms if at_ms is not None else int(time.time() * 1000))
    signature = Signature.get_signature(
        secret, body.decode(), "v3", http_uri=uri, http_method="POST", timestamp=timestamp
    )
    return body, {
        "Content-Type": "application/json",
        "X-HubSpot-Signature-v3": signature,
        "X-HubSpot-Request-Timestamp": timestamp,
    }


async def post(client: httpx.AsyncClient, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return await client.post("/webhooks/hubspot", content=body, headers=headers)


async def test_a_signed_stage_change_starts_the_deal_and_other_events_are_ignored(
    hook: httpx.AsyncClient, hs: HubSpot, fakes: FakeVendors
) -> None:
    seeded = seed_deal(hs, quote_id="Q-HS-START", stage="contractsent")
    start = stage_event(seeded.deal_id)
    other = stage_event(seeded.deal_id, propertyName="amount", propertyValue="10")
    early = stage_event(seeded.deal_id, stage="qualifiedtobuy")

    response = await post(hook, *signed([other, start, early]))

    assert response.status_code == 200, response.text
    deal_id = f"deal-{seeded.deal_id}"
    assert [(r["eventId"], r["status"]) for r in response.json()["results"]] == [
        (other["eventId"], "ignored"),
        (start["eventId"], "started"),
        (early["eventId"], "ignored"),
    ]
    assert response.json()["results"][1]["deal_id"] == deal_id
    status = await wait_for_stage(hook, deal_id, "awaiting_signature")
    assert status["stage_history"][0]["note"] == "started by hubspot-webhook:dealstage"
    assert fakes.names() == [ACT_SEND_CONTRACT]


async def test_a_redelivered_event_is_a_duplicate_and_a_new_one_joins(
    hook: httpx.AsyncClient, hs: HubSpot, fakes: FakeVendors
) -> None:
    seeded = seed_deal(hs, quote_id="Q-HS-DUP", stage="contractsent")
    event = stage_event(seeded.deal_id)
    first = await post(hook, *signed([event]))
    again = await post(hook, *signed([{**event, "attemptNumber": 1}]))
    moved_again = await post(hook, *signed([stage_event(seeded.deal_id)]))

    assert [r.status_code for r in (first, again, moved_again)] == [200, 200, 200]
    assert again.json()["results"][0]["status"] == "duplicate"
    assert moved_again.json()["results"][0]["status"] == "joined"
    await wait_for_stage(hook, f"deal-{seeded.deal_id}", "awaiting_signature")
    assert fakes.names() == [ACT_SEND_CONTRACT]


async def test_forged_stale_and_malformed_requests_are_refused_and_read_nothing(
    hook: httpx.AsyncClient, hs: HubSpot, hubspot_url: str
) -> None:
    seeded = seed_deal(hs, quote_id="Q-HS-FORGED", stage="contractsent")
    events = [stage_event(seeded.deal_id)]
    body, genuine = signed(events)
    now_ms = int(time.time() * 1000)
    reads_before = _deal_reads(hubspot_url, seeded.deal_id)
    refused = [
        (body, {"Content-Type": "application/json"}),
        signed(events, secret="guessed-secret"),
        signed(events, at_ms=now_ms - 301_000),  # older than five minutes
        signed(events, at_ms=now_ms + 301_000),
        signed(events, uri="http://127.0.0.1:8000/webhooks/other"),
        (body.replace(b"contractsent", b"closedwon"), genuine),  # body changed after signing
        (body, {**genuine, "X-HubSpot-Request-Timestamp": str(now_ms + 1)}),
        (body, {**genuine, "X-HubSpot-Request-Timestamp": "yesterday"}),
    ]
    for sent, headers in refused:
        response = await post(hook, sent, headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    malformed = [b"{not json", b'{"eventId": 1}', b'[{"eventId": "x", "objectId": 1}]']
    for sent in malformed:
        response = await post(hook, *signed(sent))
        assert response.status_code == 400, response.text
    not_json_body, not_json = signed(events)
    response = await post(hook, not_json_body, {**not_json, "Content-Type": "text/plain"})
    assert response.status_code == 415
    assert _deal_reads(hubspot_url, seeded.deal_id) == reads_before


def _deal_reads(hubspot_url: str, deal_id: str) -> int:
    received = httpx.get(f"{hubspot_url}/_sandbox/requests", params={"path_contains": deal_id})
    return len(received.json()["requests"])


async def test_a_deal_breaking_a_cpq_rule_is_refused_with_a_note_on_the_hubspot_deal(
    hook: httpx.AsyncClient, hs: HubSpot, fakes: FakeVendors
) -> None:
    seeded = seed_deal(
        hs,
        quote_id="Q-HS-RULE",
        stage="contractsent",
        lines=[{"hs_sku": "PLATFORM-PRO", "quantity": "50", "hs_discount_percentage": "55"}],
    )
    response = await post(hook, *signed([stage_event(seeded.deal_id)]))

    assert response.status_code == 200, response.text
    result = response.json()["results"][0]
    assert (result["status"], result["reason"]) == ("refused", "quote-rejected")
    assert {e["code"] for e in result["errors"]} == {"discount_above_hard_max"}
    assert result["errors"][0]["pointer"] == "/lines/0/discount_percent"
    note = hs.crm.objects.notes.basic_api.get_by_id(result["note_id"], properties=["hs_note_body"])
    assert "discount_above_hard_max" in note.properties["hs_note_body"]
    notes = hs.crm.associations.v4.basic_api.get_page("deals", seeded.deal_id, "notes")
    assert [r.to_object_id for r in notes.results] == [result["note_id"]]
    status = await hook.get(
        f"/v1/deals/deal-{seeded.deal_id}", headers={"Authorization": "Bearer sandbox-operator"}
    )
    assert status.status_code == 404
    assert fakes.names() == []


async def test_hubspot_unreachable_answers_503_and_the_redelivery_starts_the_deal(
    hook: httpx.AsyncClient, hs: HubSpot, hubspot_url: str
) -> None:
    seeded = seed_deal(hs, quote_id="Q-HS-DOWN", stage="contractsent")
    event = stage_event(seeded.deal_id)
    httpx.post(
        f"{hubspot_url}/_sandbox/faults",
        json={"rules": [{"path": "/crm/v3/objects/deals", "rate_500": 1}]},
    ).raise_for_status()
    try:
        down = await post(hook, *signed([event]))
    finally:
        httpx.post(f"{hubspot_url}/_sandbox/faults", json={"rules": []}).raise_for_status()
    assert down.status_code == 503
    assert down.headers["retry-after"] == "7"

    redelivered = await post(hook, *signed([{**event, "attemptNumber": 1}]))
    assert redelivered.json()["results"][0]["status"] == "started"
    await wait_for_stage(hook, f"deal-{seeded.deal_id}", "awaiting_signature")


async def test_temporal_unreachable_answers_503_and_loses_nothing(
    hubspot_settings: Settings,
    env: WorkflowEnvironment,
    worker: Worker,
    hs: HubSpot,
    hubspot_url: str,
) -> None:
    seeded = seed_deal(hs, quote_id="Q-HS-TEMPORAL", stage="contractsent")
    event = stage_event(seeded.deal_id)
    temporal_up = False

    async def flaky_client() -> Client:
        if not temporal_up:
            raise OSError("connection refused")
        return env.client

    crm = HubSpotCrm(build_hubspot_client(SANDBOX_TOKEN, hubspot_url))
    app = create_app(hubspot_settings, client_factory=flaky_client, crm=crm)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://qtc.test") as client:
        down = await post(client, *signed([event]))
        assert down.status_code == 503
        assert down.headers["retry-after"] == "7"
        temporal_up = True
        again = await post(client, *signed([{**event, "attemptNumber": 1}]))
        assert again.json()["results"][0]["status"] == "started"
        await wait_for_stage(client, f"deal-{seeded.deal_id}", "awaiting_signature")


async def test_hubspot_webhooks_are_refused_where_hubspot_is_not_the_crm(
    api: httpx.AsyncClient,
) -> None:
    response = await post(api, *signed([stage_event("123")]))
    assert response.status_code == 404
    assert response.json()["type"].endswith("hubspot-not-configured")
