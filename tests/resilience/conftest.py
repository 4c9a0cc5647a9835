"""Fixtures of the fault suite: a real dev server and the emulators with faults switched on.

The focused tests run one production activity under the production retry policy through a probe
workflow on the Temporal CLI dev server (real time: a retry delay cannot be measured on the
time-skipping server, which skips it). The chaos test starts its own whole stack.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from tests.stack_support import free_port

TEMPORAL_CLI = Path(sys.prefix) / "bin" / "temporal"


@pytest_asyncio.fixture(scope="session")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    """The dev server in memory, every port chosen here so parallel runs cannot collide."""
    environment = await WorkflowEnvironment.start_local(
        port=free_port(),
        ui=False,
        data_converter=pydantic_data_converter,
        dev_server_existing_path=str(TEMPORAL_CLI),
        dev_server_log_level="error",
        dev_server_extra_args=["--http-port", str(free_port()), "--metrics-port", str(free_port())],
    )
    yield environment
    await environment.shutdown()
