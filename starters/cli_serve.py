"""``qtc serve``: run the HTTP API and webhooks under uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer
import uvicorn

from runtime.logging import configure_logging
from runtime.settings import get_settings
from starters.api import create_app


def serve(
    host: Annotated[
        str | None, typer.Option(help="Interface to bind (default: QTC_API_HOST)")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind (default: QTC_API_PORT)")] = None,
) -> None:
    """Serve the API (OpenAPI at /docs), the DocuSign and Salesforce webhooks, /healthz, /readyz."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    app = create_app(settings)
    # uvicorn's own access log would duplicate ours and print query strings; ours logs one
    # structured line per request without headers.
    uvicorn.run(
        app,
        host=host or settings.api_host,
        port=settings.api_port if port is None else port,
        access_log=False,
        log_config=None,
        proxy_headers=False,
    )
