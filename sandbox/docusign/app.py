"""The DocuSign emulator's HTTP surface: eSignature REST v2.1, OAuth, and sandbox controls.

REST routes answer like DocuSign, including errors (``{"errorCode", "message"}``, 400 for what the
specification documents as errorDetails, an envelope that does not exist included, and 401 for
authentication), so the real SDK raises ``ApiException`` with the body a real account would send.
An envelope id that is not a GUID is ``INVALID_REQUEST_PARAMETER`` before anything is looked up.

OAuth and https. ``ApiClient.request_jwt_user_token`` and ``get_user_info`` always build
``https://{oauth_host}/oauth/...``: the SDK cannot be told to use plain HTTP for OAuth. This
emulator serves ``/oauth/token`` and ``/oauth/userinfo`` on whatever scheme it runs on, so either
(a) the adapter skips the JWT grant in the sandbox and sends the fixed token
``sandbox-docusign-token`` (``api_client.set_default_header("Authorization", "Bearer ...")``), or
(b) the emulator is served over TLS (uvicorn ``ssl_certfile``/``ssl_keyfile``, e.g. from
``sandbox.tls``) and the SDK's REST client trusts that CA, in which case the SDK's own JWT grant
works unchanged (the tests do this). The JWT's structure and claims are checked (RS256 header,
``iss`` = integration key, ``sub`` = user id, ``aud`` = the OAuth host the request was sent to,
``iat``/``exp``), but its signature is not: the sandbox holds no public key of the integration.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runtime.asgi import MAX_BODY_BYTES, BodyLimitMiddleware
from sandbox.common import FaultConfig, Faults, StateStore
from sandbox.docusign import envelopes as env
from sandbox.docusign.connect import (
    ConnectConfig,
    ConnectDelivery,
    ConnectUpdate,
    IncludeData,
    MessageFormat,
)
from sandbox.docusign.envelopes import DocuSignError

SANDBOX_TOKEN = "sandbox-docusign-token"
SANDBOX_CONNECT_SECRET = "sandbox-connect-secret"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_LIFETIME_S = 3600
CLOCK_SKEW_S = 300
API = "/restapi/v2.1/accounts/{account_id}"

Endpoint = Callable[[Request], Awaitable[Response]]


def _error(status_code: int, error_code: str, message: str) -> JSONResponse:
    return JSONResponse({"errorCode": error_code, "message": message}, status_code=status_code)


def _oauth_error(error: str, description: str, status_code: int = 400) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code)


class _InvalidGrant(Exception):
    pass


class SignRequest(BaseModel):
    signed_at: datetime | None = None


def _b64url_json(segment: str) -> dict[str, Any]:
    padded = segment + "=" * (-len(segment) % 4)
    try:
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError) as exc:
        raise _InvalidGrant("the assertion is not a JWT (header.payload.signature)") from exc
    if not isinstance(value, dict):
        raise _InvalidGrant("the assertion's segments must be JSON objects")
    return value


def verify_assertion(assertion: str, oauth_host: str, now: float) -> dict[str, Any]:
    """Check a JWT bearer assertion's structure and claims (not its signature)."""
    parts = assertion.split(".")
    if len(parts) != 3 or not all(parts):
        raise _InvalidGrant("the assertion is not a JWT (header.payload.signature)")
    header, claims = _b64url_json(parts[0]), _b64url_json(parts[1])
    if header.get("alg") != "RS256":
        raise _InvalidGrant("the assertion must be signed with RS256")
    for claim in ("iss", "sub"):
        if not isinstance(claims.get(claim), str) or not claims[claim]:
            raise _InvalidGrant(f"claim '{claim}' is missing")
    if claims.get("aud") != oauth_host:
        raise _InvalidGrant(f"claim 'aud' must be the OAuth host '{oauth_host}' (no scheme)")
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float) or not isinstance(iat, int | float):
        raise _InvalidGrant("claims 'iat' and 'exp' must be numeric dates")
    if exp <= now:
        raise _InvalidGrant("expired")
    if iat > now + CLOCK_SKEW_S:
        raise _InvalidGrant("claim 'iat' is in the future")
    return claims


class DocuSignEmulator:
    """State, Connect delivery and faults behind the routes of one emulator process."""

    def __init__(
        self,
        store: StateStore,
        connect: ConnectConfig,
        *,
        account_id: str,
        user_id: str,
    ) -> None:
        self.store = store
        self.faults = Faults()
        self.initial_connect = connect
        self.account_id = account_id
        self.user_id = user_id
        self.delivery = ConnectDelivery(store, connect, account_id=account_id, user_id=user_id)
        self.requests: Counter[str] = Counter()

    @property
    def envelopes(self) -> dict[str, dict[str, Any]]:
        envelopes: dict[str, dict[str, Any]] = self.store.data["envelopes"]
        return envelopes

    # --- plumbing ---------------------------------------------------------------------------

    def api(self, handler: Endpoint, *, auth: bool = True, faults: bool = True) -> Endpoint:
        """Wrap a route: faults, bearer auth, account check, DocuSign-style errors.

        Sandbox control routes pass ``auth=False, faults=False``: injected faults must never
        block the endpoint that switches them off.
        """

        async def endpoint(request: Request) -> Response:
            self.requests[handler.__name__] += 1
            fault, rule = (
                await self.faults.pick(request.method, request.url.path) if faults else (None, None)
            )
            if fault == "429" and rule is not None:
                reset = int(time.time()) + rule.retry_after_s
                return JSONResponse(
                    {
                        "errorCode": "HOURLY_APIINVOCATION_LIMIT_EXCEEDED",
                        "message": "The maximum number of hourly API invocations has been "
                        "exceeded.",
                    },
                    status_code=429,
                    headers={
                        "Retry-After": str(rule.retry_after_s),
                        "X-RateLimit-Reset": str(reset),
                        "X-RateLimit-Remaining": "0",
                    },
                )
            if fault == "500":
                return _error(500, "UNSPECIFIED_ERROR", "An unexpected error occurred (injected).")
            try:
                if auth:
                    self._authenticate(request)
                    account = request.path_params.get("account_id")
                    if account is not None and account != self.account_id:
                        raise DocuSignError(
                            400,
                            "USER_DOES_NOT_BELONG_TO_SPECIFIED_ACCOUNT",
                            "The specified User is not a member of the specified Account.",
                        )
                return await handler(request)
            except DocuSignError as exc:
                return _error(exc.status_code, exc.error_code, exc.message)

        return endpoint

    def _authenticate(self, request: Request) -> dict[str, Any]:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise DocuSignError(
                401,
                "USER_AUTHENTICATION_FAILED",
                "One or both of Username and Password are invalid.",
            )
        if token == SANDBOX_TOKEN:
            return {"sub": self.user_id}
        issued = self.store.data["tokens"].get(token)
        if issued is None or issued["expiresAt"] <= time.time():
            raise DocuSignError(
                401,
                "AUTHORIZATION_INVALID_TOKEN",
                "The access token provided is expired, revoked or malformed.",
            )
        info: dict[str, Any] = issued
        return info

    def _envelope(self, request: Request) -> dict[str, Any]:
        envelope_id = request.path_params["envelope_id"]
        env.check_envelope_id(envelope_id)
        envelope = self.envelopes.get(envelope_id)
        if envelope is None:
            raise env.envelope_not_found()
        return envelope

    def _sandbox_envelope(self, request: Request) -> dict[str, Any]:
        """An envelope for the sandbox's own routes, which answer a plain 404 when it is missing."""
        envelope = self.envelopes.get(request.path_params["envelope_id"])
        if envelope is None:
            raise DocuSignError(
                404, "ENVELOPE_DOES_NOT_EXIST", "The sandbox holds no envelope with this id."
            )
        return envelope

    # --- OAuth ------------------------------------------------------------------------------

    async def oauth_token(self, request: Request) -> Response:
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode("latin-1")).items()}
        if form.get("grant_type") != JWT_GRANT:
            return _oauth_error("unsupported_grant_type", f"only {JWT_GRANT} is supported")
        now = time.time()
        try:
            claims = verify_assertion(form.get("assertion", ""), request.headers["host"], now)
        except _InvalidGrant as exc:
            return _oauth_error("invalid_grant", str(exc))
        token = f"sbx-ds-{secrets.token_urlsafe(24)}"
        self.store.data["tokens"][token] = {
            "sub": claims["sub"],
            "iss": claims["iss"],
            "scope": claims.get("scope", ""),
            "expiresAt": now + TOKEN_LIFETIME_S,
        }
        self.store.save()
        return JSONResponse(
            {"access_token": token, "token_type": "Bearer", "expires_in": TOKEN_LIFETIME_S}
        )

    async def oauth_userinfo(self, request: Request) -> Response:
        principal = self._authenticate(request)
        return JSONResponse(
            {
                "sub": principal["sub"],
                "name": "QTC Sandbox Sender",
                "given_name": "QTC",
                "family_name": "Sandbox Sender",
                "created": "2024-01-01T00:00:00.000Z",
                "email": "sender@sandbox.example",
                "accounts": [
                    {
                        "account_id": self.account_id,
                        "is_default": True,
                        "account_name": "QTC Sandbox",
                        "base_uri": str(request.base_url).rstrip("/"),
                    }
                ],
            }
        )

    # --- envelopes --------------------------------------------------------------------------

    async def create_envelope(self, request: Request) -> Response:
        definition = env.parse_body(env.EnvelopeDefinitionIn, await request.body())
        now = datetime.now(UTC)
        envelope = env.create_envelope(definition, now)
        self.envelopes[envelope["envelopeId"]] = envelope
        self.store.save()
        if envelope["status"] == "sent":
            self.delivery.publish("envelope-sent", envelope, now)
        return JSONResponse(
            {
                "envelopeId": envelope["envelopeId"],
                "uri": f"/envelopes/{envelope['envelopeId']}",
                "statusDateTime": envelope["statusChangedDateTime"],
                "status": envelope["status"],
            },
            status_code=201,
        )

    async def get_envelope(self, request: Request) -> Response:
        include = set(request.query_params.get("include", "").split(","))
        return JSONResponse(env.envelope_view(self._envelope(request), include))

    async def get_custom_fields(self, request: Request) -> Response:
        return JSONResponse(env.custom_fields_view(self._envelope(request)))

    async def get_recipients(self, request: Request) -> Response:
        include_tabs = request.query_params.get("include_tabs", "false").lower() == "true"
        return JSONResponse(env.recipients_view(self._envelope(request), include_tabs=include_tabs))

    async def update_envelope(self, request: Request) -> Response:
        envelope = self._envelope(request)
        update = env.parse_body(env.EnvelopeUpdateIn, await request.body())
        now = datetime.now(UTC)
        status = (update.status or "").lower()
        if status == "voided":
            env.void(envelope, update.voided_reason, now)
        elif status == "sent":
            env.send(envelope, now)
        elif status:
            raise DocuSignError(
                400,
                "ENVELOPE_INVALID_STATUS",
                f"Invalid envelope status. '{update.status}' cannot be set with this call.",
            )
        if update.email_subject is not None:
            envelope["emailSubject"] = update.email_subject
            envelope["lastModifiedDateTime"] = env.ds_time(now)
        self.store.save()
        if status:
            self.delivery.publish(f"envelope-{status}", envelope, now)
        return JSONResponse({"envelopeId": envelope["envelopeId"]})

    async def list_status_changes(self, request: Request) -> Response:
        query = request.query_params
        wanted_ids = {i for i in query.get("envelope_ids", "").split(",") if i}
        for envelope_id in wanted_ids:
            env.check_envelope_id(envelope_id)
        if "from_date" not in query and not wanted_ids:
            raise env.invalid_parameter(
                "Query parameter 'from_date' must be set to a valid DateTime, or 'envelope_ids' "
                "or 'transaction_ids' must be specified."
            )
        try:
            from_date = env.parse_time(query["from_date"]) if "from_date" in query else None
            to_date = env.parse_time(query["to_date"]) if "to_date" in query else None
            count = int(query.get("count", "100"))
            start = int(query.get("start_position", "0"))
        except ValueError as exc:
            raise env.invalid_parameter(
                f"Query parameters must be valid DateTimes and integers ({exc})."
            ) from exc
        statuses = {s.lower() for s in query.get("status", "").split(",") if s}
        unknown = sorted(statuses - env.ENVELOPE_STATUSES)
        if unknown:
            raise env.invalid_parameter(f"Invalid value specified for status: {unknown[0]}.")
        statuses -= {"any"}
        custom_field = query.get("custom_field")
        include = set(query.get("include", "").split(","))

        def selected(envelope: dict[str, Any]) -> bool:
            changed = env.parse_time(envelope["statusChangedDateTime"])
            return (
                (not wanted_ids or envelope["envelopeId"] in wanted_ids)
                and (from_date is None or changed >= from_date)
                and (to_date is None or changed <= to_date)
                and (not statuses or envelope["status"] in statuses)
                and (custom_field is None or env.matches_custom_field(envelope, custom_field))
            )

        matching = sorted(
            (e for e in self.envelopes.values() if selected(e)),
            key=lambda e: e["statusChangedDateTime"],
        )
        page = matching[start : start + max(count, 0)]
        body: dict[str, Any] = {
            "resultSetSize": str(len(page)),
            "totalSetSize": str(len(matching)),
            "startPosition": str(start),
            "endPosition": str(start + len(page) - 1),
            "nextUri": "",
            "previousUri": "",
        }
        if start + len(page) < len(matching):
            body["nextUri"] = f"{request.url.path}?start_position={start + len(page)}"
        # Like DocuSign, an empty result has no "envelopes" key at all.
        if page:
            body["envelopes"] = [env.envelope_view(e, include) for e in page]
        return JSONResponse(body)

    # --- sandbox controls -------------------------------------------------------------------

    async def sign(self, request: Request) -> Response:
        try:
            ask = SignRequest.model_validate_json(await request.body() or b"{}")
        except ValidationError as exc:
            raise env.invalid_body(str(exc.errors()[0]["msg"])) from exc
        envelope = self._sandbox_envelope(request)
        if envelope["status"] not in {"sent", "delivered"}:
            raise DocuSignError(
                409,
                "ENVELOPE_NOT_SIGNABLE",
                f"Envelope {envelope['envelopeId']} is '{envelope['status']}'; only a sent "
                "envelope can be signed.",
            )
        signed_at = ask.signed_at or datetime.now(UTC)
        if signed_at.tzinfo is None:
            signed_at = signed_at.replace(tzinfo=UTC)
        env.complete(envelope, signed_at)
        self.store.save()
        delivery_ids = self.delivery.publish("envelope-completed", envelope, datetime.now(UTC))
        return JSONResponse(
            {
                "envelopeId": envelope["envelopeId"],
                "status": envelope["status"],
                "completedDateTime": envelope["completedDateTime"],
                "deliveries": [
                    {"id": i, "url": self.store.data["deliveries"][i]["url"]} for i in delivery_ids
                ],
            }
        )

    async def deliveries(self, request: Request) -> Response:
        envelope_id = request.query_params.get("envelope_id")
        records = [
            r
            for r in self.store.data["deliveries"].values()
            if envelope_id is None or r["envelopeId"] == envelope_id
        ]
        return JSONResponse({"deliveries": records})

    async def connect(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                update = ConnectUpdate.model_validate_json(await request.body() or b"{}")
                self.delivery.config = update.apply(self.delivery.config)
            except ValidationError as exc:
                raise env.invalid_body(str(exc.errors()[0]["msg"])) from exc
        config = self.delivery.config.model_dump(exclude={"secrets"})
        return JSONResponse({**config, "secret_count": len(self.delivery.config.secrets)})

    async def faults_endpoint(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                self.faults.configure(
                    FaultConfig.model_validate_json(await request.body() or b"{}")
                )
            except ValidationError as exc:
                raise env.invalid_body(str(exc.errors()[0]["msg"])) from exc
        return JSONResponse(
            {"config": self.faults.config.model_dump(), "injected": self.faults.injected}
        )

    async def reset(self, request: Request) -> Response:
        await self.delivery.cancel_all()
        self.store.reset()
        self.faults.reset()
        self.delivery.config = self.initial_connect
        self.requests.clear()
        return JSONResponse({"reset": True})

    async def stats(self, request: Request) -> Response:
        return JSONResponse(
            {
                "envelopes": len(self.envelopes),
                "envelopes_by_status": dict(Counter(e["status"] for e in self.envelopes.values())),
                "deliveries": self.delivery.summary(),
                "tokens_issued": len(self.store.data["tokens"]),
                "requests": dict(self.requests),
                "faults_injected": self.faults.injected,
            }
        )

    async def health(self, request: Request) -> Response:
        return JSONResponse({"ok": True, "service": "docusign"})

    def routes(self) -> list[Route]:
        def control(handler: Endpoint) -> Endpoint:
            return self.api(handler, auth=False, faults=False)

        return [
            Route("/oauth/token", self.api(self.oauth_token, auth=False), methods=["POST"]),
            Route("/oauth/userinfo", self.api(self.oauth_userinfo, auth=False), methods=["GET"]),
            Route(f"{API}/envelopes", self.api(self.create_envelope), methods=["POST"]),
            Route(f"{API}/envelopes", self.api(self.list_status_changes), methods=["GET"]),
            Route(f"{API}/envelopes/{{envelope_id}}", self.api(self.get_envelope), methods=["GET"]),
            Route(
                f"{API}/envelopes/{{envelope_id}}", self.api(self.update_envelope), methods=["PUT"]
            ),
            Route(
                f"{API}/envelopes/{{envelope_id}}/custom_fields",
                self.api(self.get_custom_fields),
                methods=["GET"],
            ),
            Route(
                f"{API}/envelopes/{{envelope_id}}/recipients",
                self.api(self.get_recipients),
                methods=["GET"],
            ),
            Route("/_sandbox/envelopes/{envelope_id}/sign", control(self.sign), methods=["POST"]),
            Route("/_sandbox/deliveries", control(self.deliveries), methods=["GET"]),
            Route("/_sandbox/connect", control(self.connect), methods=["GET", "POST"]),
            Route("/_sandbox/faults", control(self.faults_endpoint), methods=["GET", "POST"]),
            Route("/_sandbox/reset", control(self.reset), methods=["POST"]),
            Route("/_sandbox/stats", control(self.stats), methods=["GET"]),
            Route("/_sandbox/health", control(self.health), methods=["GET"]),
        ]


def _initial_state() -> dict[str, Any]:
    return {"envelopes": {}, "deliveries": {}, "tokens": {}}


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return _error(405, "INVALID_REQUEST_METHOD", "The request method is not supported.")
    return _error(
        exc.status_code,
        "RESOURCE_NOT_FOUND" if exc.status_code == 404 else "INVALID_REQUEST",
        "The URL provided does not resolve to a resource."
        if exc.status_code == 404
        else str(exc.detail),
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    return _error(500, "UNSPECIFIED_ERROR", f"{type(exc).__name__}: {exc}")


def create_app(
    state_file: Path | None = None,
    connect_url: str | None = None,
    connect_secret: str = SANDBOX_CONNECT_SECRET,
    deliver_twice: bool = False,
    *,
    account_id: str = "sandbox-account",
    user_id: str = "sandbox-user",
    max_body_bytes: int = MAX_BODY_BYTES,
    max_attempts: int = 50,
    initial_backoff_s: float = 0.2,
    max_backoff_s: float = 5.0,
    connect_format: MessageFormat = "json",
    connect_include_data: list[IncludeData] | None = None,
) -> Starlette:
    """Build the DocuSign emulator.

    Args:
        state_file: JSON file the state is written through to; envelopes, issued tokens and
            deliveries survive a restart, and deliveries still pending are resumed at start-up.
        connect_url: the account-level Connect listener (the product's ``/webhooks/docusign``),
            used for envelopes that carry no ``eventNotification``; changeable at run time with
            ``POST /_sandbox/connect``.
        connect_secret: the HMAC key for ``X-DocuSign-Signature-1``.
        deliver_twice: send every Connect message twice (at-least-once delivery made visible).
        account_id: the only account id the REST routes accept.
        user_id: the user the fixed sandbox token stands for.
        max_body_bytes: larger request bodies are refused with 413.
        max_attempts: Connect delivery attempts per message before it is marked failed.
        initial_backoff_s: wait after the first failed attempt; doubles each time.
        max_backoff_s: cap of the wait between attempts.
        connect_format: ``json`` (JSON SIM) or ``xml`` (the legacy DocuSignEnvelopeInformation).
        connect_include_data: JSON SIM's ``includeData`` (e.g. ``["custom_fields",
            "recipients"]``); none, the default, sends the message without the envelope summary,
            as a Connect configuration made with DocuSign's defaults does.
    """
    store = StateStore(state_file, _initial_state)
    for key, value in _initial_state().items():
        store.data.setdefault(key, value)
    connect = ConnectConfig(
        url=connect_url,
        secrets=[connect_secret],
        deliver_twice=deliver_twice,
        max_attempts=max_attempts,
        initial_backoff_s=initial_backoff_s,
        max_backoff_s=max_backoff_s,
        format=connect_format,
        include_data=list(connect_include_data or []),
    )
    emulator = DocuSignEmulator(store, connect, account_id=account_id, user_id=user_id)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        emulator.delivery.resume_pending()
        yield
        await emulator.delivery.aclose()

    def too_large() -> Response:
        return _error(
            413,
            "REQUEST_ENTITY_TOO_LARGE",
            f"The request body exceeds the maximum size of {max_body_bytes} bytes.",
        )

    app = Starlette(
        routes=emulator.routes(),
        middleware=[Middleware(BodyLimitMiddleware, limit=max_body_bytes, too_large=too_large)],
        exception_handlers={HTTPException: _http_error, Exception: _unexpected},
        lifespan=lifespan,
    )
    app.state.emulator = emulator
    return app
