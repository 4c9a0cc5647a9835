"""``GET /metrics``: Prometheus text for the API process.

Two sources in one answer: the API's own counters (requests by route and status, webhooks
included) from ``prometheus_client``, and the Temporal SDK's client metrics, which the SDK's
runtime serves on a loopback port of this process and which are appended as they are. Open in the
sandbox; an operator token elsewhere (``QTC_API_METRICS_REQUIRE_AUTH`` decides either way).
"""

from __future__ import annotations

from typing import Annotated

import httpx
from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from starlette.responses import Response

from starters.api.auth import bearer, principal_for
from starters.api.problems import Problem

REGISTRY = CollectorRegistry()
REQUESTS = Counter(
    "qtc_api_requests_total",
    "HTTP requests answered by the API",
    ["method", "route", "status"],
    registry=REGISTRY,
)

router = APIRouter(tags=["operations"])


@router.get("/metrics", summary="Prometheus metrics of the API process", include_in_schema=True)
async def metrics(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Response:
    settings = request.app.state.qtc.settings
    required = settings.api_metrics_require_auth
    if required is None:
        required = not settings.sandbox
    if required:
        principal = (
            principal_for(credentials.credentials, settings.api_tokens) if credentials else None
        )
        if principal is None or principal.role != "operator":
            raise Problem(401, "unauthorized", "Metrics need an operator's bearer token.")
    body = generate_latest(REGISTRY)
    sdk_url: str | None = request.app.state.sdk_metrics_url
    if sdk_url is not None:
        try:
            async with httpx.AsyncClient(timeout=2) as http:
                body += (await http.get(sdk_url)).content
        except httpx.HTTPError:
            pass  # the SDK's exporter starts with the first Temporal connection
    return Response(body, media_type=CONTENT_TYPE_LATEST)
