"""The FastAPI application factory: routes, problem documents, body limit, access log."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qtc.catalog import load_catalog
from qtc.ports import CrmReader
from runtime.asgi import BodyLimitMiddleware
from runtime.settings import Settings
from runtime.temporal import connect
from starters import codec_api
from starters.api import routes_deals, routes_ironclad, routes_quotes, routes_webhooks
from starters.api.problems import Problem, install_problem_handlers
from starters.api.state import ApiState, ClientFactory, State, TemporalGateway
from workers.compose import LazyCrmReader

access_log = structlog.get_logger("qtc.api.access")


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

        try:
            await self.app(scope, receive, record)
        finally:
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
) -> FastAPI:
    """Build the API.

    Args:
        settings: The process settings (tokens, secrets, catalog path, Temporal address).
        client_factory: Connects to Temporal; called on first use (default: ``connect(settings)``).
        opportunity_reader: Reads an opportunity as a ``Quote`` (blocking; default: Salesforce
            through ``integrations.salesforce.activities``).

    Raises:
        qtc.errors.CatalogError: The catalog cannot be loaded (the API refuses to start).
    """

    async def default_factory() -> Any:
        return await connect(settings)

    app = FastAPI(
        title="Quote-to-Cash API",
        version="1.0.0",
        description=(
            "Price quotes, start and steer deals, and receive DocuSign and Salesforce webhooks. "
            "Authenticate with `Authorization: Bearer <token>`; errors are "
            "`application/problem+json`."
        ),
    )
    app.state.qtc = ApiState(
        settings=settings,
        catalog=load_catalog(settings.catalog),
        temporal=TemporalGateway(
            client_factory or default_factory, timedelta(seconds=settings.api_temporal_timeout_s)
        ),
        crm=crm or LazyCrmReader(settings),
    )
    install_problem_handlers(app, settings)
    app.include_router(routes_quotes.router)
    app.include_router(routes_deals.router)
    app.include_router(routes_webhooks.router)
    app.include_router(routes_ironclad.router)
    app.include_router(codec_api.router)

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


def _too_large(settings: Settings) -> Callable[[], Response]:
    def respond() -> Response:
        return Problem(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            "body-too-large",
            f"The request body exceeds {settings.max_body_bytes} bytes.",
        ).response()

    return respond
