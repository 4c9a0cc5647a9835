"""DocuSign Connect deliveries: only signed messages count, and a redelivery changes nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from fastapi import FastAPI
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.testing import WorkflowEnvironment

from qtc.ports import ACT_MARK_CLOSED_WON, ACT_SEND_CONTRACT
from runtime.settings import Settings
from starters.api import create_app
from tests.api.support import (
    CONNECT_SECRET,
    SALES,
    FakeContracts,
    FakeCrm,
    connect_event,
    connect_headers,
    wait_for_stage,
)
from tests.workflows.support import FakeVendors


async def _deal_awaiting_signature(api: httpx.AsyncClient, quote: dict[str, Any]) -> str:
    started = await api.post("/v1/deals", json={"quote": quote, "phase": 1}, headers=SALES)
    deal_id: str = started.json()["deal_id"]
    await wait_for_stage(api, deal_id, "awaiting_signature")
    return deal_id


async def _signal_count(env: WorkflowEnvironment, deal_id: str) -> int:
    history = await env.client.get_workflow_handle(deal_id).fetch_history()
    signalled = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    return sum(1 for event in history.events if event.event_type == signalled)


async def test_a_signed_completion_records_the_signature_and_closes_the_deal(
    api: httpx.AsyncClient, quote: dict[str, Any], fakes: FakeVendors
) -> None:
    deal_id = await _deal_awaiting_signature(api, quote)
    body = connect_event(f"env-{deal_id}", opportunity_id=quote["opportunity_id"])

    response = await api.post("/webhooks/docusign", content=body, headers=connect_headers(body))

    assert response.status_code == 200
    assert response.json() == {
        "status": "accepted",
        "deal_id": deal_id,
        "envelope_id": f"env-{deal_id}",
    }
    status = await wait_for_stage(api, deal_id, "completed")
    assert status["signature"]["signer_name"] == "Jane Doe"
    assert status["signature"]["completed_at"].startswith("2026-11-20T10:15:00")
    assert fakes.names()[-1] == ACT_MARK_CLOSED_WON


async def test_a_duplicate_delivery_is_acknowledged_and_records_one_signature(
    api: httpx.AsyncClient, quote: dict[str, Any], fakes: FakeVendors, env: WorkflowEnvironment
) -> None:
    deal_id = await _deal_awaiting_signature(api, quote)
    body = connect_event(f"env-{deal_id}", opportunity_id=quote["opportunity_id"])
    headers = connect_headers(body)

    first, second = await asyncio.gather(
        api.post("/webhooks/docusign", content=body, headers=headers),
        api.post("/webhooks/docusign", content=body, headers=headers),
    )
    status = await wait_for_stage(api, deal_id, "completed")
    late = await api.post("/webhooks/docusign", content=body, headers=headers)

    assert (first.status_code, second.status_code, late.status_code) == (200, 200, 200)
    assert late.json()["status"] == "ignored"
    assert status["signature"]["envelope_id"] == f"env-{deal_id}"
    signed = [entry for entry in status["stage_history"] if entry["stage"] == "signed"]
    assert len(signed) == 1
    # The steps after a signature run as local activities in one workflow task that also
    # completes the deal; a duplicate landing meanwhile makes the server refuse that completion
    # (recorded as an unhandled-command task failure), and the task runs again with its
    # idempotent steps. So Closed Won is asked once, plus once per refused task, always the same.
    history = await env.client.get_workflow_handle(deal_id).fetch_history()
    refused = [
        event
        for event in history.events
        if event.HasField("workflow_task_failed_event_attributes")
        and event.workflow_task_failed_event_attributes.cause
        == WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND
    ]
    closed_won = fakes.inputs(ACT_MARK_CLOSED_WON)
    assert len(closed_won) == 1 + len(refused)
    assert all(call == closed_won[0] for call in closed_won)


async def test_forged_missing_truncated_and_moved_signatures_are_refused(
    api: httpx.AsyncClient, quote: dict[str, Any], env: WorkflowEnvironment
) -> None:
    deal_id = await _deal_awaiting_signature(api, quote)
    body = connect_event(f"env-{deal_id}", opportunity_id=quote["opportunity_id"])
    genuine = connect_headers(body)["X-DocuSign-Signature-1"]
    other_body = connect_event("env-other", opportunity_id=quote["opportunity_id"])
    attempts = [
        {"Content-Type": "application/json"},
        connect_headers(body, "not-the-secret"),
        {"Content-Type": "application/json", "X-DocuSign-Signature-1": genuine[:20]},
        {"Content-Type": "application/json", "X-DocuSign-Signature-1": "%%%not base64"},
        # a genuine signature replayed on another body
        {"Content-Type": "application/json", "X-DocuSign-Signature-1": genuine},
    ]
    bodies = [body, body, body, body, other_body]

    for headers, sent in zip(attempts, bodies, strict=True):
        response = await api.post("/webhooks/docusign", content=sent, headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["content-type"] == "application/problem+json"

    assert await _signal_count(env, deal_id) == 0
    assert (await wait_for_stage(api, deal_id, "awaiting_signature"))["signature"] is None


async def test_either_key_is_accepted_while_the_connect_secret_rotates(
    settings: Settings,
    env: WorkflowEnvironment,
    crm: FakeCrm,
    worker: object,
    quote: dict[str, Any],
) -> None:
    async def client() -> Any:
        return env.client

    rotating = settings.model_copy(
        update={"docusign_connect_secrets_extra": [settings.docusign_connect_secret]}
    )
    rotating = rotating.model_copy(
        update={"docusign_connect_secret": type(settings.docusign_connect_secret)("new-secret")}
    )
    app: FastAPI = create_app(rotating, client_factory=client, crm=crm, contracts=FakeContracts())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://qtc.test"
    ) as api:
        deal_id = await _deal_awaiting_signature(api, quote)
        body = connect_event(f"env-{deal_id}", opportunity_id=quote["opportunity_id"])

        # DocuSign signs with every active key: the old one first, the new one second ...
        both = await api.post(
            "/webhooks/docusign",
            content=body,
            headers=connect_headers(body, "retired", "new-secret"),
        )
        # ... and a message signed only with the old key still verifies during the overlap.
        old_only = await api.post(
            "/webhooks/docusign", content=body, headers=connect_headers(body, CONNECT_SECRET)
        )
        unknown = await api.post(
            "/webhooks/docusign", content=body, headers=connect_headers(body, "retired")
        )

    assert (both.status_code, old_only.status_code, unknown.status_code) == (200, 200, 401)


async def test_events_other_than_completion_are_acknowledged_and_ignored(
    api: httpx.AsyncClient, quote: dict[str, Any], env: WorkflowEnvironment
) -> None:
    deal_id = await _deal_awaiting_signature(api, quote)
    body = connect_event(
        f"env-{deal_id}", opportunity_id=quote["opportunity_id"], event="envelope-delivered"
    )

    response = await api.post("/webhooks/docusign", content=body, headers=connect_headers(body))

    assert response.status_code == 200
    assert response.json() == {"status": "ignored", "event": "envelope-delivered"}
    assert await _signal_count(env, deal_id) == 0


async def test_an_envelope_this_product_did_not_send_is_acknowledged_and_ignored(
    api: httpx.AsyncClient, contracts: FakeContracts
) -> None:
    # Its custom fields are carried and name no deal: decided without reading DocuSign.
    without_field = connect_event("env-stranger", opportunity_id=None)
    # Its fields name a deal that does not exist here (another installation, or long deleted).
    unknown_deal = connect_event("env-stranger", opportunity_id="006UNKNOWNOPP00001")

    first = await api.post(
        "/webhooks/docusign", content=without_field, headers=connect_headers(without_field)
    )
    second = await api.post(
        "/webhooks/docusign", content=unknown_deal, headers=connect_headers(unknown_deal)
    )

    assert (first.status_code, second.status_code) == (200, 200)
    assert first.json()["status"] == second.json()["status"] == "ignored"
    assert second.json()["deal_id"] == "deal-006UNKNOWNOPP00001"
    assert contracts.reads == []


async def test_signed_garbage_is_a_400_problem_not_a_crash(api: httpx.AsyncClient) -> None:
    for body in [b"{not json", b"[]", b'{"event": "envelope-completed"}', b"\xff\xfe"]:
        response = await api.post("/webhooks/docusign", content=body, headers=connect_headers(body))
        assert response.status_code == 400, body
        assert response.headers["content-type"] == "application/problem+json"
    xml = b"<x/>"
    headers = {**connect_headers(xml), "Content-Type": "application/xml"}
    assert (await api.post("/webhooks/docusign", content=xml, headers=headers)).status_code == 400
    text = b"envelope-completed"
    headers = {**connect_headers(text), "Content-Type": "text/plain"}
    assert (await api.post("/webhooks/docusign", content=text, headers=headers)).status_code == 415


async def test_a_signature_arriving_before_the_contract_id_is_kept_for_it(
    api: httpx.AsyncClient, quote: dict[str, Any], fakes: FakeVendors
) -> None:
    fakes.hold_send_contract = asyncio.Event()
    started = await api.post("/v1/deals", json={"quote": quote, "phase": 1}, headers=SALES)
    deal_id = started.json()["deal_id"]
    while ACT_SEND_CONTRACT not in fakes.names():
        await asyncio.sleep(0.02)
    body = connect_event(f"env-{deal_id}", opportunity_id=quote["opportunity_id"])

    response = await api.post("/webhooks/docusign", content=body, headers=connect_headers(body))
    fakes.hold_send_contract.set()

    assert response.status_code == 200
    assert (await wait_for_stage(api, deal_id, "completed"))["signature"] is not None
