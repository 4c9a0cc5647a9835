"""ASGI middleware shared by the API and the sandbox's emulators."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

MAX_BODY_BYTES = 2_000_000


class BodyLimitMiddleware:
    """Refuse request bodies over a limit with 413 before the app reads them."""

    def __init__(
        self,
        app: ASGIApp,
        limit: int = MAX_BODY_BYTES,
        too_large: Callable[[], Response] | None = None,
    ) -> None:
        self.app = app
        self.limit = limit
        self.too_large = too_large or (
            lambda: Response(
                json.dumps({"error": {"message": "Request body too large"}}),
                status_code=413,
                media_type="application/json",
            )
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self.too_large()(scope, receive, send)
            return
        received = 0
        messages: list[Any] = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    await self.too_large()(scope, receive, send)
                    return
                if not message.get("more_body", False):
                    break
            else:
                break

        async def replay() -> Any:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)
