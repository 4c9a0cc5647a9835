"""One deal, one trace: the API request that starts it, the workflow and every activity share a
trace id, parented through Temporal's headers by the tracing interceptor."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from qtc.ports import (
    ACT_CREATE_BILLING_CUSTOMER,
    ACT_MARK_CLOSED_WON,
    ACT_PROVISION_PRODUCT,
    ACT_SEND_CONTRACT,
    ACT_SEND_FIRST_INVOICE,
)
from runtime.tracing import tracing_interceptors
from starters.api import create_app
from tests.api.support import (
    SALES,
    FakeCrm,
    api_settings,
    connect_event,
    connect_headers,
    wait_for_stage,
)
from tests.workflows.support import FakeVendors, deal_worker

EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    # The global provider can be set once per process; the tracers used by the API and by the
    # interceptor are proxies that follow it.
    trace.set_tracer_provider(provider)
    yield EXPORTER


@pytest_asyncio.fixture
async def traced_api(
    env: WorkflowEnvironment, tmp_path: Path, spans: InMemorySpanExporter
) -> AsyncIterator[httpx.AsyncClient]:
    config = env.client.config()
    config["interceptors"] = tracing_interceptors()
    client = Client(**config)
    task_queue = f"traced-{uuid.uuid4()}"

    async def same_client() -> Client:
        return client

    app = create_app(api_settings(task_queue, tmp_path), client_factory=same_client, crm=FakeCrm())
    async with (
        deal_worker(client, task_queue, FakeVendors()),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://qtc.test"
        ) as api,
    ):
        yield api


async def test_a_deal_started_through_the_api_is_one_trace_down_to_each_activity(
    traced_api: httpx.AsyncClient, quote: dict[str, Any], spans: InMemorySpanExporter
) -> None:
    spans.clear()
    started = await traced_api.post("/v1/deals", json={"quote": quote}, headers=SALES)
    deal_id = started.json()["deal_id"]
    await wait_for_stage(traced_api, deal_id, "awaiting_signature")
    start_trace = _trace_of(spans.get_finished_spans(), "POST /v1/deals")

    body = connect_event(f"env-{deal_id}", opportunity_id=quote["opportunity_id"])
    await traced_api.post("/webhooks/docusign", content=body, headers=connect_headers(body))
    await wait_for_stage(traced_api, deal_id, "completed")
    finished = spans.get_finished_spans()

    # The workflow's spans descend from the request that started the deal, so every step it
    # runs, before and after the signature, is in that request's trace.
    in_start_trace = {s.name for s in finished if s.context.trace_id == start_trace}
    assert "StartWorkflow:DealWorkflow" in in_start_trace
    assert "RunWorkflow:DealWorkflow" in in_start_trace
    for step in (
        ACT_SEND_CONTRACT,
        ACT_MARK_CLOSED_WON,
        ACT_CREATE_BILLING_CUSTOMER,
        ACT_SEND_FIRST_INVOICE,
        ACT_PROVISION_PRODUCT,
    ):
        assert f"RunActivity:{step}" in in_start_trace, step


def _trace_of(spans: tuple[ReadableSpan, ...], name: str) -> int:
    roots = [s for s in spans if s.name == name and s.context is not None]
    assert roots, f"no span {name!r} among {sorted({s.name for s in spans})}"
    trace_id: int = roots[-1].context.trace_id
    return trace_id
