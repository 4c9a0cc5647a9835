"""The FastAPI application factory: routes, problem documents, body limit, access log."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from datetime import timedelta
from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qtc.catalog import load_catalog
from qtc.ports import ContractReader, CrmReader, OpportunityCheck, OpportunityStageReader
from runtime.asgi import BodyLimitMiddleware
from runtime.settings import Settings
from runtime.temporal import connect, metrics_runtime
from runtime.tracing import configure_tracing
from starters import codec_api
from starters.api import (
    metrics,
    review,
    routes_deals,
    routes_hubspot,
    routes_ironclad,
    routes_quotes,
    routes_webhooks,
)
from starters.api.metrics import REQUESTS
from starters.api.problems import Problem, install_problem_handlers
from starters.api.state import ApiState, ClientFactory, State, TemporalGateway
from workers.compose import LazyContractReader, LazyCrmReader, opportunity_check

access_log = structlog.get_logger("qtc.api.access")
tracer = trace.get_tracer("qtc.api")


class AccessLogMiddleware:
    """One canonical line per request: method, path, status, duration. Never headers or bodies,
    so tokens and webhook signatures cannot reach the logs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        # The request's span is the root of a deal's trace: the Temporal client's tracing
        # interceptor continues it into the workflow and every activity.
        with tracer.start_as_current_span(
            f"{scope['method']} {scope['path']}", kind=SpanKind.SERVER
        ) as span:
            try:
                await self.app(scope, receive, record)
            finally:
                # The route's template, not the raw path: one series per endpoint, not per deal.
                route = getattr(scope.get("route"), "path", "unmatched")
                span.update_name(f"{scope['method']} {route}")
                span.set_attribute("http.response.status_code", status)
                REQUESTS.labels(scope["method"], route, str(status)).inc()
                access_log.info(
                    "http_request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 1),
                )


def create_app(
    settings: Settings,
    client_factory: ClientFactory | None = None,
    crm: CrmReader | None = None,
    contracts: ContractReader | None = None,
    opportunities: OpportunityCheck | None = None,
    hubspot: CrmReader | None = None,
) -> FastAPI:
    """Build the API.

    Args:
        settings: The process settings (tokens, secrets, catalog path, Temporal address).
        client_factory: Connects to Temporal; called on first use (default: ``connect(settings)``).
        crm: Reads an opportunity as a ``Quote`` (blocking; default: the CRM ``QTC_CRM`` names,
            built on first use); when it also reads stages, Outbound Messages without
            ``StageName`` are decided with it.
        contracts: Reads a contract by its id (blocking; default: the e-signature service
            ``QTC_ESIGN`` names, built on first use).
        opportunities: Checks, before ``POST /v1/deals`` starts a deal, that the CRM holds the
            quote's opportunity (the sandbox gives it to the CRM emulator). Default: through the
            configured CRM; with a stand-in ``crm`` and no ``opportunities``, not checked.
        hubspot: The reader of HubSpot webhooks (default: ``crm`` when ``QTC_CRM=hubspot``, a
            HubSpot reader when ``QTC_HUBSPOT_TASK_QUEUE`` is set, else none).

    Raises:
        qtc.errors.CatalogError: The catalog cannot be loaded (the API refuses to start).
    """

    configure_tracing("qtc-api")
    # The SDK's client metrics, served by its runtime on a loopback port of this process and
    # appended to /metrics; the port is picked free now, the exporter starts with the connection.
    sdk_metrics_port = _free_loopback_port()

    async def default_factory() -> Any:
        return await connect(settings, runtime=metrics_runtime(f"127.0.0.1:{sdk_metrics_port}"))

    app = FastAPI(
        title="Quote-to-Cash API",
        version="1.0.0",
        description=(
            "Price quotes, start and steer deals, and receive DocuSign, Salesforce and HubSpot "
            "webhooks. "
            "Authenticate with `Authorization: Bearer <token>`; errors are "
            "`application/problem+json`."
        ),
    )
    if crm is None:
        crm = LazyCrmReader(settings)
        opportunities = opportunities or opportunity_check(settings, crm)
    app.state.qtc = ApiState(
        settings=settings,
        catalog=load_catalog(settings.catalog),
        temporal=TemporalGateway(
            client_factory or default_factory, timedelta(seconds=settings.api_temporal_timeout_s)
        ),
        crm=crm,
        contracts=contracts or LazyContractReader(settings),
        opportunity_stages=crm if isinstance(crm, OpportunityStageReader) else None,
        opportunities=opportunities,
        hubspot=hubspot or _hubspot_reader(settings, crm),
    )
    app.state.sdk_metrics_url = (
        f"http://127.0.0.1:{sdk_metrics_port}/metrics" if client_factory is None else None
    )
    install_problem_handlers(app, settings)
    app.include_router(metrics.router)
    app.include_router(routes_quotes.router)
    app.include_router(routes_deals.router)
    app.include_router(routes_webhooks.router)
    app.include_router(routes_hubspot.router)
    app.include_router(routes_ironclad.router)
    app.include_router(codec_api.router)
    app.include_router(review.router)

    @app.get("/healthz", tags=["health"], summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["health"],
        summary="Temporal is reachable (503 otherwise)",
        responses={503: {"description": "Temporal is unreachable"}},
    )
    async def readyz(state: State) -> dict[str, str]:
        if not await state.temporal.reachable():
            raise Problem(
                503,
                "temporal-unavailable",
                "Temporal is not reachable.",
                headers={"Retry-After": str(settings.api_retry_after_s)},
            )
        return {"status": "ready"}

    app.add_middleware(
        BodyLimitMiddleware, limit=settings.max_body_bytes, too_large=_too_large(settings)
    )
    app.add_middleware(AccessLogMiddleware)
    return app


def _hubspot_reader(settings: Settings, crm: CrmReader) -> CrmReader | None:
    if settings.crm == "hubspot":
        return crm
    if settings.hubspot_task_queue:
        return LazyCrmReader(settings, "hubspot")
    return None


def _too_large(settings: Settings) -> Callable[[], Response]:
    def respond() -> Response:
        return Problem(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            "body-too-large",
            f"The request body exceeds {settings.max_body_bytes} bytes.",
        ).response()

    return respond


def _free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
