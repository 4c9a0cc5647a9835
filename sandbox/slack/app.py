"""A Slack Web API emulator (Starlette) for the calls the notifier makes, as Slack documents them.

- ``POST /api/auth.test``, ``POST /api/chat.postMessage``, ``POST|GET /api/conversations.history``
  with a bot token (``Authorization: Bearer xoxb-sandbox``, or ``token`` in the body);
  bodies are JSON or form-encoded, as slack-sdk sends them.
- Answers are Slack's: HTTP 200 with ``{"ok": true, ...}``, or HTTP 200 with ``{"ok": false,
  "error": "<code>"}`` (``not_authed``, ``invalid_auth``, ``channel_not_found``, ``no_text``,
  ``invalid_blocks``, ``invalid_metadata_format``, ``invalid_arguments``); a rate limit is HTTP 429
  with ``Retry-After`` and ``"error": "ratelimited"``, a fault 500 is ``"error": "internal_error"``.
- Channels are seeded (``#qtc-reviews``, ``#qtc-escalations``); a channel is named by id or name
  (with or without ``#``). ``ts`` values increase per channel, as Slack's do.

Sandbox controls: ``GET /_sandbox/messages`` (every posted message, oldest first),
``GET /_sandbox/stats``, ``POST /_sandbox/reset``, ``POST /_sandbox/faults``. The SMTP sink
(``sandbox.smtp``) runs beside it and is listed here too: ``GET /_sandbox/mail``,
``POST /_sandbox/mail/faults``.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runtime.asgi import MAX_BODY_BYTES, BodyLimitMiddleware
from sandbox.common import FaultConfig, Faults, StateStore, read_json_model
from sandbox.smtp.sink import SmtpSink

SANDBOX_BOT_TOKEN = "xoxb-sandbox"
TEAM = {"team": "QTC Sandbox", "team_id": "T0QTCSANDBOX", "url": "https://qtc-sandbox.slack.com/"}
BOT = {"user": "qtc", "user_id": "U0QTCBOT", "bot_id": "B0QTCBOT"}
CHANNELS = {"C0QTCREVIEWS": "qtc-reviews", "C0QTCESCALATE": "qtc-escalations"}


def _initial() -> dict[str, Any]:
    return {"messages": [], "last_ts": 0.0}


def _slack(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return JSONResponse(body, status_code=status, headers=headers)


def _error(code: str, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return _slack({"ok": False, "error": code}, status, headers)


async def _arguments(request: Request) -> dict[str, Any]:
    """The method's arguments: query string, then a JSON or form body, as Slack accepts them."""
    args: dict[str, Any] = dict(request.query_params)
    raw = await request.body()
    if not raw:
        return args
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "application/json":
        loaded = json.loads(raw)
        if not isinstance(loaded, dict):
            raise ValueError("a JSON body must be an object")
        args.update(loaded)
    else:
        args.update(parse_qsl(raw.decode(), keep_blank_values=True))
    return args


def _token(request: Request, args: dict[str, Any]) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    token = args.get("token")
    return str(token) if token else None


def _channel_id(name: str) -> str | None:
    if name in CHANNELS:
        return name
    wanted = name.removeprefix("#")
    return next((cid for cid, cname in CHANNELS.items() if cname == wanted), None)


def create_app(
    state_file: Path | None = None,
    bot_token: str = SANDBOX_BOT_TOKEN,
    mail: SmtpSink | None = None,
) -> Starlette:
    store = StateStore(state_file, _initial)
    faults = Faults()
    sink = mail or SmtpSink()

    async def call(request: Request) -> tuple[dict[str, Any] | None, Response | None]:
        fault, rule = await faults.pick(request.method, request.url.path)
        if fault == "429":
            retry = str(rule.retry_after_s if rule else 1)
            return None, _error("ratelimited", 429, {"Retry-After": retry})
        if fault == "500":
            return None, _error("internal_error", 500)
        try:
            args = await _arguments(request)
        except (ValueError, UnicodeDecodeError):
            return None, _error("invalid_json")
        token = _token(request, args)
        if not token:
            return None, _error("not_authed")
        if token != bot_token:
            return None, _error("invalid_auth")
        return args, None

    async def auth_test(request: Request) -> Response:
        _, refused = await call(request)
        return refused or _slack({"ok": True, **TEAM, **BOT})

    async def post_message(request: Request) -> Response:
        args, refused = await call(request)
        if refused is not None or args is None:
            return refused or _error("invalid_arguments")
        channel = _channel_id(str(args.get("channel") or ""))
        if not args.get("channel"):
            return _error("channel_not_found")
        if channel is None:
            return _error("channel_not_found")
        blocks = args.get("blocks")
        if isinstance(blocks, str):
            try:
                blocks = json.loads(blocks)
            except json.JSONDecodeError:
                return _error("invalid_blocks")
        if blocks is not None and not isinstance(blocks, list):
            return _error("invalid_blocks")
        if not args.get("text") and not blocks and not args.get("attachments"):
            return _error("no_text")
        metadata = args.get("metadata")
        if isinstance(metadata, str):
            try:
                metadata = json.loads(metadata)
            except json.JSONDecodeError:
                return _error("invalid_metadata_format")
        if metadata is not None and (
            not isinstance(metadata, dict)
            or not isinstance(metadata.get("event_type"), str)
            or not isinstance(metadata.get("event_payload"), dict)
        ):
            return _error("invalid_metadata_format")
        with store.lock:
            ts = max(time.time(), store.data["last_ts"] + 0.000001)
            store.data["last_ts"] = ts
            message = {
                "type": "message",
                "subtype": "bot_message",
                "ts": f"{ts:.6f}",
                "channel": channel,
                "text": args.get("text") or "",
                "blocks": blocks or [],
                "metadata": metadata,
                "bot_id": BOT["bot_id"],
                "user": BOT["user_id"],
                "received_at": dt.datetime.now(dt.UTC).isoformat(),
            }
            store.data["messages"].append(message)
            store.save()
        shown = {k: v for k, v in message.items() if k not in ("channel", "received_at")}
        if metadata is None:
            shown.pop("metadata")
        return _slack({"ok": True, "channel": channel, "ts": message["ts"], "message": shown})

    async def history(request: Request) -> Response:
        args, refused = await call(request)
        if refused is not None or args is None:
            return refused or _error("invalid_arguments")
        channel = _channel_id(str(args.get("channel") or ""))
        if channel is None or not str(args.get("channel", "")).startswith("C"):
            # conversations.history takes a channel id, never a name.
            return _error("channel_not_found")
        try:
            limit = min(max(int(args.get("limit", 100)), 1), 999)
        except ValueError:
            return _error("invalid_arguments")
        with_metadata = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
        with store.lock:
            found = [m for m in store.data["messages"] if m["channel"] == channel]
        found.reverse()  # newest first, as Slack returns them
        page = []
        for message in found[:limit]:
            shown = {k: v for k, v in message.items() if k not in ("channel", "received_at")}
            if not with_metadata or shown.get("metadata") is None:
                shown.pop("metadata", None)
            page.append(shown)
        return _slack(
            {
                "ok": True,
                "messages": page,
                "has_more": len(found) > limit,
                "response_metadata": {"next_cursor": ""},
            }
        )

    async def listing(_: Request) -> Response:
        with store.lock:
            messages = list(store.data["messages"])
        return JSONResponse(
            {
                "messages": messages,
                "channels": CHANNELS,
                "faults_injected": faults.injected,
            }
        )

    async def stats(_: Request) -> Response:
        with store.lock:
            posted = len(store.data["messages"])
        return JSONResponse(
            {
                "messages_posted": posted,
                "mail_received": len(sink.messages()),
                "faults_injected": faults.injected,
            }
        )

    async def mail_listing(_: Request) -> Response:
        return JSONResponse({"messages": sink.messages(), "faults_injected": sink.faults.injected})

    async def reset(_: Request) -> Response:
        store.reset()
        faults.reset()
        sink.reset()
        return JSONResponse({"reset": True})

    async def set_faults(request: Request) -> Response:
        try:
            faults.configure(await read_json_model(request, FaultConfig))
        except ValidationError as exc:
            return JSONResponse({"error": exc.errors(include_url=False)}, status_code=422)
        return JSONResponse(faults.config.model_dump())

    async def set_mail_faults(request: Request) -> Response:
        try:
            sink.faults.configure(await read_json_model(request, FaultConfig))
        except ValidationError as exc:
            return JSONResponse({"error": exc.errors(include_url=False)}, status_code=422)
        return JSONResponse(sink.faults.config.model_dump())

    return Starlette(
        routes=[
            Route("/api/auth.test", auth_test, methods=["POST", "GET"]),
            Route("/api/chat.postMessage", post_message, methods=["POST"]),
            Route("/api/conversations.history", history, methods=["POST", "GET"]),
            Route("/_sandbox/messages", listing, methods=["GET"]),
            Route("/_sandbox/stats", stats, methods=["GET"]),
            Route("/_sandbox/mail", mail_listing, methods=["GET"]),
            Route("/_sandbox/reset", reset, methods=["POST"]),
            Route("/_sandbox/faults", set_faults, methods=["POST"]),
            Route("/_sandbox/mail/faults", set_mail_faults, methods=["POST"]),
        ],
        middleware=[Middleware(BodyLimitMiddleware, limit=MAX_BODY_BYTES)],
    )
