"""Deals on Ironclad that end unsigned: an expired quote, a deal marked lost. Either cancels the
Ironclad workflow through the real activities (time-skipping server, emulator behind them, fakes
for the other systems)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from integrations.ironclad.activities import IroncladESignature
from integrations.ironclad.client import IroncladApi
from qtc.deal import SIGNAL_MARK_LOST, MarkLost
from tests.ironclad.conftest import CREATOR, TEMPLATE
from tests.workflows.support import (
    FakeVendors,
    new_opportunity_id,
    priced_quote,
    start_deal,
    start_test_environment,
    wait_for_stage,
)
from workflows.deal import DealWorkflow


@pytest_asyncio.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await start_test_environment()
    yield environment
    await environment.shutdown()


def vendors_on_ironclad(fakes: FakeVendors, esign: IroncladESignature) -> list[Any]:
    """Every fake activity the worker registers, with the contract ones replaced by Ironclad's."""
    contract = {fakes.send_contract.__name__, fakes.void_contract.__name__}
    others = [fn for fn in fakes.activities() if getattr(fn, "__name__", "") not in contract]
    return [esign.send_contract, esign.void_contract, *others]


async def test_an_expired_quote_cancels_its_ironclad_workflow(
    env: WorkflowEnvironment, ironclad_url: str, api: IroncladApi
) -> None:
    esign = IroncladESignature(api, TEMPLATE, creator_email=CREATOR)
    now = await env.get_current_time()
    valid_until = (now + timedelta(days=30)).date()
    priced = priced_quote(
        opportunity_id=new_opportunity_id(), priced_at=now, valid_until=valid_until
    )
    task_queue = f"ironclad-{uuid.uuid4()}"
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[DealWorkflow],
        activities=vendors_on_ironclad(FakeVendors(), esign),
    ):
        handle = await start_deal(env.client, task_queue, priced)
        waiting = await wait_for_stage(handle, "awaiting_signature")
        status = await handle.result()

    assert status.stage == "expired"
    state = httpx.get(f"{ironclad_url}/_sandbox/workflows").json()
    [workflow] = state["workflows"]
    assert workflow["id"] == waiting.envelope_id
    assert workflow["status"] == "cancelled"
    [cancellation] = state["cancellations"]
    assert cancellation["workflowId"] == waiting.envelope_id
    assert "expired" in cancellation["comment"]


async def test_a_deal_marked_lost_cancels_its_ironclad_workflow(
    env: WorkflowEnvironment, ironclad_url: str, api: IroncladApi
) -> None:
    esign = IroncladESignature(api, TEMPLATE, creator_email=CREATOR)
    now = await env.get_current_time()
    priced = priced_quote(
        opportunity_id=new_opportunity_id(),
        priced_at=now,
        valid_until=(now + timedelta(days=30)).date(),
    )
    task_queue = f"ironclad-{uuid.uuid4()}"
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[DealWorkflow],
        activities=vendors_on_ironclad(FakeVendors(), esign),
    ):
        handle = await start_deal(env.client, task_queue, priced)
        waiting = await wait_for_stage(handle, "awaiting_signature")
        await handle.signal(SIGNAL_MARK_LOST, MarkLost(by="sam", reason="went with a competitor"))
        status = await handle.result()

    assert status.stage == "lost"
    state = httpx.get(f"{ironclad_url}/_sandbox/workflows").json()
    assert [(w["id"], w["status"]) for w in state["workflows"]] == [
        (waiting.envelope_id, "cancelled")
    ]
    assert "competitor" in state["cancellations"][0]["comment"]
