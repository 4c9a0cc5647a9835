"""One time-skipping server per test session; a fresh task queue, worker and deal per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from qtc.models import PricedQuote
from tests.workflows.support import (
    FakeVendors,
    deal_worker,
    new_opportunity_id,
    priced_quote,
    start_test_environment,
)


@pytest_asyncio.fixture(scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await start_test_environment()
    yield environment
    await environment.shutdown()


@pytest.fixture
def task_queue() -> str:
    return f"deals-{uuid.uuid4()}"


@pytest.fixture
def fakes() -> FakeVendors:
    return FakeVendors()


@pytest_asyncio.fixture
async def worker(
    env: WorkflowEnvironment, task_queue: str, fakes: FakeVendors
) -> AsyncIterator[Worker]:
    async with deal_worker(env.client, task_queue, fakes) as running:
        yield running


@pytest_asyncio.fixture
async def now(env: WorkflowEnvironment) -> datetime:
    """The test server's clock, which time skipping moves; quotes are dated against it."""
    return await env.get_current_time()


@pytest.fixture
def quote(now: datetime) -> Callable[..., PricedQuote]:
    """A quote priced ten days ago and valid for another 30 days, for a fresh opportunity."""

    def make(**overrides: Any) -> PricedQuote:
        options: dict[str, Any] = {
            "opportunity_id": new_opportunity_id(),
            "priced_at": now - timedelta(days=10),
            "valid_until": (now + timedelta(days=30)).date(),
        }
        options.update(overrides)
        return priced_quote(**options)

    return make
