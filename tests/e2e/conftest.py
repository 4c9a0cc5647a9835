"""End-to-end fixtures: the real Temporal dev server, the sandbox emulators, the worker process.

One dev server (the ``temporal`` CLI shipped in this environment, SQLite file in a temporary
directory, every port ephemeral) serves the whole session. Each test gets its own namespace
(created with the server, search attributes included) and task queue, emulators reset to their
seed, and the worker as a separate process (``python -m starters.cli worker``) configured only
through ``QTC_*`` variables, as in production. A namespace per test matters because the emulators
hand out the same record ids after every reset, and a deal id is derived from the opportunity id.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from simple_salesforce import Salesforce
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from runtime.search_attributes import SEARCH_ATTRIBUTES
from runtime.temporal import connect
from sandbox.runner import RunningEmulators
from tests.e2e.support import WorkerProcess, qtc_env, salesforce, settings_from
from tests.stack_support import free_port

TEMPORAL_CLI = Path(sys.prefix) / "bin" / "temporal"
# One per test that deploys (each takes its own); created with the server, so spares cost little.
NAMESPACES = [f"e2e-{n}" for n in range(32)]


@pytest_asyncio.fixture(scope="session")
async def temporal(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[WorkflowEnvironment]:
    database = tmp_path_factory.mktemp("temporal") / "temporal.sqlite"
    environment = await WorkflowEnvironment.start_local(
        port=free_port(),
        ui=False,
        data_converter=pydantic_data_converter,
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_existing_path=str(TEMPORAL_CLI),
        dev_server_database_filename=str(database),
        dev_server_log_level="error",
        dev_server_extra_args=[
            "--http-port",
            str(free_port()),
            "--metrics-port",
            str(free_port()),
            # Measured about twice the throughput of the default journal (TEMPORAL-NOTES.md).
            "--sqlite-pragma",
            "journal_mode=wal",
            "--sqlite-pragma",
            "synchronous=normal",
            *(arg for namespace in NAMESPACES for arg in ("--namespace", namespace)),
        ],
    )
    yield environment
    await environment.shutdown()


@pytest.fixture(scope="session")
def namespaces() -> Iterator[str]:
    """Hands out each pre-created namespace once."""
    return iter(NAMESPACES)


def temporal_address(temporal: WorkflowEnvironment) -> str:
    return temporal.client.service_client.config.target_host


@dataclass
class Deployment:
    """Everything a test's processes are pointed at."""

    env: dict[str, str]
    task_queue: str
    emulators: RunningEmulators
    sf: Salesforce
    directory: Path

    def worker(self, name: str = "worker") -> WorkerProcess:
        return WorkerProcess(self.env, self.directory / f"{name}.log")


@pytest.fixture
def deployment(
    temporal: WorkflowEnvironment,
    namespaces: Iterator[str],
    reset_emulators: RunningEmulators,
    tmp_path: Path,
) -> Deployment:
    task_queue = f"e2e-{uuid.uuid4()}"
    env = qtc_env(
        temporal_address(temporal), next(namespaces), task_queue, reset_emulators, tmp_path
    )
    return Deployment(env, task_queue, reset_emulators, salesforce(reset_emulators), tmp_path)


@pytest_asyncio.fixture
async def client(deployment: Deployment) -> Client:
    """A client of the test's namespace, built the way every process builds it."""
    return await connect(settings_from(deployment.env))


@pytest.fixture
def worker(deployment: Deployment) -> Iterator[WorkerProcess]:
    process = deployment.worker().start()
    yield process
    process.stop()
