"""On the real Temporal dev server: listing deals by stage through visibility, server-side
de-duplication of redelivered signatures, and a DocuSign delivery surviving a Temporal outage."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from runtime.settings import Settings
from runtime.temporal import connect
from starters.api import create_app
from tests.api.support import (
    DEAL_DESK,
    FINANCE,
    SALES,
    FakeContracts,
    FakeCrm,
    api_settings,
    connect_event,
    connect_headers,
    free_port,
    new_quote,
    start_dev_server,
    wait_for_stage,
)
from tests.workflows.support import FakeVendors, deal_worker


class DevStack:
    """A dev server on a fixed ephemeral port and SQLite file, and the API connected to it the
    way production connects (``connect(settings)``), so it can be stopped and started again."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.database = tmp_path / "temporal.sqlite"
        self.task_queue = f"api-dev-{uuid.uuid4()}"
        self.settings: Settings = api_settings(
            self.task_queue, tmp_path, temporal_address=f"127.0.0.1:{self.port}"
        )
        self.fakes = FakeVendors()
        self.env: WorkflowEnvironment | None = None

    async def start(self) -> WorkflowEnvironment:
        self.env = await start_dev_server(self.database, self.port)
        return self.env

    async def stop(self) -> None:
        assert self.env is not None
        await self.env.shutdown()
        self.env = None


@pytest_asyncio.fixture
async def stack(tmp_path: Path) -> AsyncIterator[DevStack]:
    dev = DevStack(tmp_path)
    await dev.start()
    yield dev
    if dev.env is not None:
        await dev.stop()


@pytest_asyncio.fixture
async def api(stack: DevStack) -> AsyncIterator[httpx.AsyncClient]:
    async def production_client() -> Client:
        return await connect(stack.settings)

    app = create_app(
        stack.settings, client_factory=production_client, crm=FakeCrm(), contracts=FakeContracts()
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://qtc.test"
    ) as client:
        yield client


async def _listed(api: httpx.AsyncClient, stage: str, expected: set[str]) -> list[dict[str, Any]]:
    """Visibility is eventually consistent: poll until the listing shows the expected deals."""
    for _ in range(100):
        response = await api.get("/v1/deals", params={"stage": stage}, headers=FINANCE)
        assert response.status_code == 200, response.text
        deals: list[dict[str, Any]] = response.json()["deals"]
        if {d["deal_id"] for d in deals} == expected:
            return deals
        await asyncio.sleep(0.1)
    raise AssertionError(f"listing for {stage} never became {expected}: {deals}")


async def test_deals_are_listed_by_stage_from_visibility(
    stack: DevStack, api: httpx.AsyncClient
) -> None:
    assert stack.env is not None
    plain = new_quote()
    discounted = new_quote(
        lines=[{"sku": "PLATFORM-PRO", "quantity": 50, "discount_percent": "30"}]
    )
    async with deal_worker(stack.env.client, stack.task_queue, stack.fakes):
        for quote in (plain, discounted):
            assert (
                await api.post("/v1/deals", json={"quote": quote}, headers=SALES)
            ).status_code == 201
        plain_id, discounted_id = (f"deal-{q['opportunity_id']}" for q in (plain, discounted))
        await wait_for_stage(api, plain_id, "awaiting_signature")

        waiting = await _listed(api, "pending_approval", {discounted_id})
        sent = await _listed(api, "awaiting_signature", {plain_id})
        everything = await api.get("/v1/deals", headers=FINANCE)

    assert waiting[0]["customer"] == "Acme Robotics, Inc."
    assert waiting[0]["phase"] == 3 and waiting[0]["status"] == "running"
    assert sent[0]["arr"] == 82800.0  # 50 seats at 108.00 and premium support, a year
    assert {d["deal_id"] for d in everything.json()["deals"]} == {plain_id, discounted_id}
    assert (await api.get("/v1/deals", params={"stage": "lost"})).status_code == 401
    assert (await api.get("/v1/deals", params={"limit": 0}, headers=DEAL_DESK)).status_code == 422


async def _signals(env: WorkflowEnvironment, deal_id: str) -> int:
    history = await env.client.get_workflow_handle(deal_id).fetch_history()
    signalled = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    return sum(1 for event in history.events if event.event_type == signalled)


async def test_a_redelivered_signature_is_recorded_once_in_the_deal_history(
    stack: DevStack, api: httpx.AsyncClient
) -> None:
    assert stack.env is not None
    quote = new_quote()
    deal_id = f"deal-{quote['opportunity_id']}"
    body = connect_event(f"env-{deal_id}", opportunity_id=quote["opportunity_id"])
    # No worker: the deal waits at its first step, so the history holds exactly what was sent.
    assert (await api.post("/v1/deals", json={"quote": quote}, headers=SALES)).status_code == 201

    for _ in range(3):
        response = await api.post("/webhooks/docusign", content=body, headers=connect_headers(body))
        assert response.status_code == 200

    assert await _signals(stack.env, deal_id) == 1


async def test_a_delivery_during_a_temporal_outage_is_refused_then_lands_after_restart(
    stack: DevStack, api: httpx.AsyncClient
) -> None:
    assert stack.env is not None
    quote = new_quote()
    deal_id = f"deal-{quote['opportunity_id']}"
    async with deal_worker(stack.env.client, stack.task_queue, stack.fakes):
        started = await api.post("/v1/deals", json={"quote": quote, "phase": 1}, headers=SALES)
        assert started.status_code == 201
        await wait_for_stage(api, deal_id, "awaiting_signature")
    body = connect_event(f"env-{deal_id}", opportunity_id=quote["opportunity_id"])

    await stack.stop()
    refused = await api.post("/webhooks/docusign", content=body, headers=connect_headers(body))
    not_ready = await api.get("/readyz")
    restarted = await stack.start()
    retried = await api.post("/webhooks/docusign", content=body, headers=connect_headers(body))

    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "7"
    assert not_ready.status_code == 503
    assert retried.status_code == 200, retried.text
    async with deal_worker(restarted.client, stack.task_queue, stack.fakes):
        status = await wait_for_stage(api, deal_id, "completed", seconds=30)
    assert status["signature"]["envelope_id"] == f"env-{deal_id}"
    assert (await api.get("/readyz")).status_code == 200
