"""The API through its real HTTP stack (httpx over ASGI) against a real Temporal.

Most tests share one time-skipping test server per session and get a fresh task queue, worker and
opportunity each, with the real ``DealWorkflow`` and recording fakes of the vendor activities. The
CRM is an in-memory stand-in behind the API's ``crm`` seam. Tests that need
visibility or a server restart start the real dev server themselves (see ``support.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from runtime.settings import Settings
from starters.api import create_app
from tests.api.support import FakeContracts, FakeCrm, api_settings, new_quote
from tests.workflows.support import FakeVendors, deal_worker, start_test_environment


@pytest_asyncio.fixture(scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await start_test_environment()
    yield environment
    await environment.shutdown()


@pytest.fixture
def task_queue() -> str:
    return f"api-deals-{uuid.uuid4()}"


@pytest.fixture
def fakes() -> FakeVendors:
    return FakeVendors()


@pytest.fixture
def crm() -> FakeCrm:
    return FakeCrm()


@pytest.fixture
def contracts() -> FakeContracts:
    return FakeContracts()


@pytest_asyncio.fixture
async def worker(
    env: WorkflowEnvironment, task_queue: str, fakes: FakeVendors
) -> AsyncIterator[Worker]:
    async with deal_worker(env.client, task_queue, fakes) as running:
        yield running


@pytest.fixture
def settings(task_queue: str, tmp_path: Path) -> Settings:
    return api_settings(task_queue, tmp_path)


@pytest.fixture
def app(
    settings: Settings, env: WorkflowEnvironment, crm: FakeCrm, contracts: FakeContracts
) -> FastAPI:
    async def same_client() -> Client:
        return env.client

    return create_app(settings, client_factory=same_client, crm=crm, contracts=contracts)


@pytest_asyncio.fixture
async def api(app: FastAPI, worker: Worker) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the app, with a deal worker running behind it."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://qtc.test") as client:
        yield client


@pytest.fixture
def quote() -> dict[str, Any]:
    return new_quote()
