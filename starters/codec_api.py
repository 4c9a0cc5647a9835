"""The remote codec endpoint: lets the Temporal Web UI and CLI show encrypted payloads in clear.

Protocol (Temporal's codec server protocol): ``POST /codec/encode`` and ``POST /codec/decode`` take
and return ``Payloads`` as protobuf JSON, ``{"payloads": [{"metadata": {k: base64}, "data":
base64}]}``; the client names the namespace in ``X-Namespace``. Point the Web UI at it with
``temporal server start-dev --ui-codec-endpoint http://127.0.0.1:8000/codec`` (or the UI's
``TEMPORAL_CODEC_ENDPOINT``), and the CLI with ``--codec-endpoint ...`` and
``--codec-auth "Bearer <token>"``.

Who may use it (decided here, the contract was silent):

- decode: ``finance``, ``deal_desk`` and ``operator``. A decoded payload can be any deal's quote,
  legal entity, invoice and failure details, and the endpoint cannot scope a blob to a deal, so it
  is for the roles whose work already spans every deal (reviewing invoices, approving quotes,
  repairing parked deals). ``sales`` is refused: a rep sees their own deals through the API, and
  decode would show them every other rep's customers and prices.
- encode: ``operator`` only. Encoding is what lets the Web UI send a signal or start a workflow with
  encrypted input; that bypasses the API's role checks (a finance token could approve a quote), so
  it stays with the people who repair deals by hand.
- The Web UI sends ``Authorization`` only when it is configured to pass an access token. In the
  sandbox the token is therefore optional (``QTC_CODEC_REQUIRE_AUTH`` unset): the sandbox key is
  published, so a token would protect nothing. A token that is sent is always checked. Outside the
  sandbox a token is required; put the UI behind a proxy that adds one, or use the CLI.

CORS for the Web UI origin(s) in ``QTC_CODEC_CORS_ORIGINS`` is handled here, including on error
responses, so the UI shows the 401/403 instead of an opaque CORS failure.

Mount it with ``app.include_router(codec_api.router)``; it reads ``app.state.qtc.settings``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials
from google.protobuf import json_format
from starlette.responses import Response
from temporalio.api.common.v1 import Payloads

from runtime.codec import AesGcmCodec, CodecKeyError, codec_from_settings
from runtime.settings import ApiPrincipal, Role, Settings
from starters.api.auth import bearer, principal_for
from starters.api.problems import Problem, problem_schema

log = structlog.get_logger("qtc.codec")

DECODE_ROLES: tuple[Role, ...] = ("finance", "deal_desk", "operator")
ENCODE_ROLES: tuple[Role, ...] = ("operator",)
_ALLOW_HEADERS = "authorization, content-type, x-namespace"
_PREFLIGHT_MAX_AGE_S = "600"


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.qtc.settings
    return settings


def _cors_headers(request: Request) -> dict[str, str]:
    origin = request.headers.get("origin")
    if origin is None or origin not in _settings(request).codec_cors_origins:
        return {}
    # The UI may send cookies ("include cross-origin credentials"), so the origin is echoed,
    # never "*", and caches must key on it.
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        "Vary": "Origin",
    }


class _CorsRoute(APIRoute):
    """A route whose every response, errors included, carries the CORS headers for the UI."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def with_cors(request: Request) -> Response:
            try:
                response = await handler(request)
            except Problem as problem:
                response = problem.response()
            response.headers.update(_cors_headers(request))
            return response

        return with_cors


router = APIRouter(prefix="/codec", tags=["codec"], route_class=_CorsRoute)

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The payloads, encoded or decoded",
        "content": {"application/json": {"schema": {"type": "object"}}},
    },
    **{code: problem_schema() for code in (400, 401, 403, 413, 415)},
}
_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"payloads": {"type": "array", "items": {"type": "object"}}},
                }
            }
        },
    }
}


async def _caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> ApiPrincipal | None:
    """The token's principal; None for a tokenless call where tokens are optional (sandbox)."""
    settings = _settings(request)
    if credentials is None:
        if settings.codec_auth_required:
            raise Problem(
                401,
                "unauthorized",
                "A bearer token is required.",
                headers={"WWW-Authenticate": 'Bearer realm="qtc"'},
            )
        return None
    principal = principal_for(credentials.credentials, settings.api_tokens)
    if principal is None:
        raise Problem(
            401,
            "unauthorized",
            "The bearer token is not valid.",
            headers={"WWW-Authenticate": 'Bearer realm="qtc", error="invalid_token"'},
        )
    return principal


Caller = Annotated[ApiPrincipal | None, Depends(_caller)]


def _require(principal: ApiPrincipal | None, roles: tuple[Role, ...], action: str) -> None:
    if principal is not None and principal.role not in roles:
        raise Problem(
            403,
            "forbidden",
            f"Payload {action} needs the role {' or '.join(roles)}; "
            f"your token has {principal.role}.",
        )


def _codec(request: Request) -> AesGcmCodec:
    """The app's codec, built from its settings on first use."""
    state = request.app.state
    codec: AesGcmCodec | None = getattr(state, "qtc_codec", None)
    if codec is None:
        codec = codec_from_settings(_settings(request))
        state.qtc_codec = codec
    return codec


async def _read_payloads(request: Request) -> Payloads:
    settings = _settings(request)
    namespace = request.headers.get("x-namespace")
    if namespace is not None and namespace != settings.temporal_namespace:
        raise Problem(
            400,
            "unknown-namespace",
            f"This codec serves namespace {settings.temporal_namespace!r}, not {namespace!r}.",
        )
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise Problem(415, "unsupported-media-type", "The codec accepts application/json only.")
    try:
        return json_format.Parse(await request.body(), Payloads())
    except (json_format.ParseError, UnicodeDecodeError) as err:
        raise Problem(
            400,
            "malformed-payloads",
            'The body is not Payloads JSON: {"payloads": [{"metadata": {...}, "data": "..."}]}.',
        ) from err


def _payloads_response(payloads: Payloads) -> Response:
    return Response(json_format.MessageToJson(payloads), media_type="application/json")


def _who(principal: ApiPrincipal | None) -> str:
    return principal.person if principal is not None else "anonymous (sandbox)"


@router.post(
    "/encode",
    summary="Encrypt payloads (Temporal remote codec protocol; operator only)",
    responses=_RESPONSES,
    response_class=Response,
    openapi_extra=_BODY,
)
async def encode(request: Request, principal: Caller) -> Response:
    _require(principal, ENCODE_ROLES, "encoding")
    payloads = await _read_payloads(request)
    encoded = await _codec(request).encode(payloads.payloads)
    log.info("codec_encode", by=_who(principal), payloads=len(encoded))
    return _payloads_response(Payloads(payloads=encoded))


@router.post(
    "/decode",
    summary="Decrypt payloads for the Web UI and CLI (finance, deal desk, operator)",
    responses=_RESPONSES,
    response_class=Response,
    openapi_extra=_BODY,
)
async def decode(request: Request, principal: Caller) -> Response:
    _require(principal, DECODE_ROLES, "decoding")
    payloads = await _read_payloads(request)
    try:
        decoded = await _codec(request).decode(payloads.payloads)
    except CodecKeyError as err:
        raise Problem(400, "undecodable-payload", str(err)) from err
    # Who looked at decrypted customer data is worth an audit line.
    log.info("codec_decode", by=_who(principal), payloads=len(decoded))
    return _payloads_response(Payloads(payloads=decoded))


async def _preflight(request: Request) -> Response:
    headers = _cors_headers(request)
    if not headers:
        raise Problem(403, "origin-not-allowed", "This origin may not call the codec endpoint.")
    headers.update(
        {
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": _ALLOW_HEADERS,
            "Access-Control-Max-Age": _PREFLIGHT_MAX_AGE_S,
        }
    )
    return Response(status_code=204, headers=headers)


router.add_api_route("/encode", _preflight, methods=["OPTIONS"], include_in_schema=False)
router.add_api_route("/decode", _preflight, methods=["OPTIONS"], include_in_schema=False)
