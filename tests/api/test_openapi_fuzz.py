"""Schemathesis-generated requests for every operation in the OpenAPI spec: none gets a 500.

Cases are drawn with hypothesis (positive and negative, a bounded number per operation) and sent
through the real HTTP stack to the app with a real Temporal behind it.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from starters.api import create_app
from tests.api.support import (
    OPERATOR,
    FakeContracts,
    FakeCrm,
    api_settings,
    callout_headers,
    connect_headers,
    free_port,
    start_dev_server,
)
from tests.workflows.support import FakeVendors, deal_worker

EXAMPLES_PER_OPERATION = 15


@pytest_asyncio.fixture
async def dev_app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    """The app on the dev server (the test server lacks visibility, which GET /v1/deals uses)."""
    env: WorkflowEnvironment = await start_dev_server(tmp_path / "fuzz.sqlite", free_port())
    task_queue = f"api-fuzz-{uuid.uuid4()}"

    async def client() -> Client:
        return env.client

    try:
        async with deal_worker(env.client, task_queue, FakeVendors()):
            yield create_app(
                api_settings(task_queue, tmp_path),
                client_factory=client,
                crm=FakeCrm(),
                contracts=FakeContracts(),
            )
    finally:
        await env.shutdown()


def _draw_cases(app: FastAPI) -> list[Any]:
    schema = schemathesis.openapi.from_dict(app.openapi())
    cases: list[Any] = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # the spec FastAPI publishes must be valid
        operation = result.ok()
        strategy = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE, headers=OPERATOR),
            operation.as_strategy(GenerationMode.NEGATIVE, headers=OPERATOR),
        )

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            database=None,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(strategy)
        def collect(case: Any) -> None:
            cases.append(case)

        collect()
    return cases


def _request(case: Any) -> dict[str, Any]:
    """Schemathesis's requests-style keyword arguments, as httpx takes them; webhook bodies are
    signed so that the cases reach the parsers behind the signature checks."""
    kwargs = case.as_transport_kwargs(base_url="http://qtc.test")
    request: dict[str, Any] = {
        "method": kwargs["method"],
        "url": kwargs["url"],
        "headers": {k: str(v) for k, v in (kwargs.get("headers") or {}).items()},
        "params": kwargs.get("params"),
    }
    if "json" in kwargs:
        request["json"] = kwargs["json"]
    elif kwargs.get("data") is not None:
        data = kwargs["data"]
        request["content"] = data if isinstance(data, bytes) else str(data).encode()
    path = httpx.URL(request["url"]).path
    if path in ("/webhooks/docusign", "/webhooks/salesforce"):
        body = request.pop("content", None) or json.dumps(request.pop("json", None)).encode()
        sign = connect_headers if path == "/webhooks/docusign" else callout_headers
        request["content"] = body
        request["headers"] = {**request["headers"], **sign(body)}
    return request


async def test_no_generated_request_makes_the_api_fail_with_a_500(dev_app: FastAPI) -> None:
    app = dev_app
    cases = _draw_cases(app)
    operations = sum(len(methods) for methods in app.openapi()["paths"].values())
    assert len({case.operation.label for case in cases}) == operations

    failures = []
    seen: Counter[int] = Counter()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://qtc.test") as api:
        for case in cases:
            request = _request(case)
            try:
                response = await api.request(**request)
            except (httpx.InvalidURL, httpx.LocalProtocolError, UnicodeEncodeError):
                continue  # not sendable over HTTP at all: no server would ever see it
            seen[response.status_code] += 1
            if response.status_code >= 500:
                failures.append((request["method"], request["url"], response.status_code))

    assert failures == []
    # The cases reached the handlers, not only the validation in front of them.
    assert {200, 400, 403, 404, 422} <= set(seen), seen
