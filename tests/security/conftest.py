"""Security tests: one time-skipping server per session, clients that encrypt (or not), and a
log capture that sees everything structlog and the stdlib root logger write."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
import structlog
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment

from runtime.logging import configure_logging
from tests.workflows.support import start_test_environment


@pytest_asyncio.fixture(scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await start_test_environment()
    yield environment
    await environment.shutdown()


def client_with(env: WorkflowEnvironment, data_converter: DataConverter) -> Client:
    """A client on the test server with this data converter (time skipping kept)."""
    config: Any = env.client.config()
    config["data_converter"] = data_converter
    return Client(**config)


@pytest.fixture
def plain_client(env: WorkflowEnvironment) -> Client:
    """A client WITHOUT the codec: what the server, its database and a bare Web UI see."""
    return client_with(env, pydantic_data_converter)


@pytest.fixture
def captured_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """Every log line of the test, JSON, as a process configured by ``configure_logging`` writes
    them (structlog and the stdlib root logger), at DEBUG so SDK debug lines are included."""
    buffer = io.StringIO()
    saved_structlog = structlog.get_config()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    monkeypatch.setattr(sys, "stderr", buffer)
    configure_logging("DEBUG", json=True)
    try:
        yield buffer
    finally:
        structlog.configure(**saved_structlog)
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
