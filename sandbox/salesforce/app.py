"""The Salesforce REST emulator (Starlette), spoken to through the real simple-salesforce client.

Endpoints (``vXX.X`` is any of ``API_VERSIONS``):

- ``GET /services/data/`` lists versions; ``GET /services/data/vXX.X/`` lists resources.
- ``GET .../query?q=`` and ``.../queryAll?q=`` run SOQL (see ``soql``); results are paged with
  ``nextRecordsUrl`` (``GET .../query/{locator}``); the header ``Sforce-Query-Options:
  batchSize=N`` sets the page size (1-2000 here; a real org enforces at least 200).
- ``GET|PATCH|DELETE .../sobjects/{Type}/{id}``, ``POST .../sobjects/{Type}``,
  ``GET|PATCH .../sobjects/{Type}/{ExternalIdField}/{value}`` (upsert: 201 created, 204 updated,
  300 when several records match), ``GET .../sobjects[/{Type}[/describe]]``.
- ``POST /services/oauth2/token``: ``grant_type=password`` (``SANDBOX_USERNAME``,
  ``SANDBOX_PASSWORD`` optionally followed by ``SANDBOX_SECURITY_TOKEN``) and
  ``grant_type=client_credentials`` (``SANDBOX_CLIENT_ID`` / ``SANDBOX_CLIENT_SECRET``); both return
  the sandbox session id as ``access_token`` and this server as ``instance_url``.
- ``POST /services/Soap/u/XX.X``: the partner-API SOAP login simple-salesforce uses for
  username/password (same credentials).
- ``/_sandbox/faults`` (a rule's ``rate_429`` is rendered as Salesforce's 403
  ``REQUEST_LIMIT_EXCEEDED``, ``rate_500`` as 500 ``UNKNOWN_EXCEPTION``), ``/_sandbox/reset``
  (seed data back, faults off, stats zeroed), ``/_sandbox/stats``.

Every REST call needs ``Authorization: Bearer <session id>`` (default ``sandbox-session``); errors
are Salesforce's JSON list ``[{"message", "errorCode"}]`` with its status codes, so
simple-salesforce raises the same exceptions it raises against a real org.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape

import defusedxml.ElementTree as SafeElementTree
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runtime.asgi import MAX_BODY_BYTES, BodyLimitMiddleware
from sandbox.common import FaultConfig, Faults, StateStore, read_json_model
from sandbox.salesforce.org import MAX_BATCH_SIZE, Org, SalesforceError, not_found
from sandbox.salesforce.schema import SCHEMA, SObjectType
from sandbox.salesforce.seed import ORG_ID, USER_ID, seed_state

SANDBOX_SESSION_ID = "sandbox-session"
SANDBOX_USERNAME = "admin@qtc-sandbox.example"
SANDBOX_PASSWORD = "sandbox-password"
SANDBOX_SECURITY_TOKEN = "sandbox-token"
SANDBOX_CLIENT_ID = "sandbox-client-id"
SANDBOX_CLIENT_SECRET = "sandbox-client-secret"
API_VERSIONS = ("55.0", "56.0", "57.0", "58.0", "59.0", "60.0", "61.0", "62.0")
RELEASES = {
    "55.0": "Summer '22",
    "56.0": "Winter '23",
    "57.0": "Spring '23",
    "58.0": "Summer '23",
    "59.0": "Winter '24",
    "60.0": "Spring '24",
    "61.0": "Summer '24",
    "62.0": "Winter '25",
}

Params = dict[str, str]
Handler = Callable[[Request, Params], Awaitable[Response]]


def error_response(error: SalesforceError) -> Response:
    entry: dict[str, Any] = {"message": error.message, "errorCode": error.error_code}
    if error.fields is not None:
        entry["fields"] = error.fields
    return JSONResponse([entry], status_code=error.status)


def _too_large() -> Response:
    return error_response(
        SalesforceError(413, "REQUEST_ENTITY_TOO_LARGE", "The request body is too large")
    )


def _instance_url(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


def _batch_size(request: Request) -> int:
    options = request.headers.get("sforce-query-options", "")
    match = re.search(r"batchSize\s*=\s*(\d+)", options)
    return min(MAX_BATCH_SIZE, max(1, int(match.group(1)))) if match else MAX_BATCH_SIZE


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw or b"null")
    except json.JSONDecodeError as exc:
        raise SalesforceError(400, "JSON_PARSER_ERROR", f"Unexpected character: {exc}") from None


def _soap(body: str, status_code: int = 200) -> Response:
    envelope = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns="urn:partner.soap.sforce.com" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xmlns:sf="urn:fault.partner.soap.sforce.com">'
        f"<soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"
    )
    return Response(envelope, status_code=status_code, media_type="text/xml; charset=utf-8")


def _soap_fault(code: str, message: str) -> Response:
    return _soap(
        f"<soapenv:Fault><faultcode>sf:{code}</faultcode><faultstring>{code}: {escape(message)}"
        '</faultstring><detail><sf:LoginFault xsi:type="sf:LoginFault">'
        f"<sf:exceptionCode>{code}</sf:exceptionCode>"
        f"<sf:exceptionMessage>{escape(message)}</sf:exceptionMessage>"
        "</sf:LoginFault></detail></soapenv:Fault>",
        status_code=500,
    )


def _local_text(root: Element, local_name: str) -> str | None:
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == local_name:
            return element.text or ""
    return None


def _password_ok(username: str | None, password: str | None) -> bool:
    return username == SANDBOX_USERNAME and password in (
        SANDBOX_PASSWORD,
        SANDBOX_PASSWORD + SANDBOX_SECURITY_TOKEN,
    )


def create_app(
    state_file: Path | None = None,
    session_id: str = SANDBOX_SESSION_ID,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> Starlette:
    """Build the emulator. ``state_file``: write-through JSON state, so a restart loses nothing."""
    store = StateStore(state_file, seed_state)
    org = Org(store)
    faults = Faults()
    stats: Counter[str] = Counter()
    errors: Counter[str] = Counter()

    def api_base(version: str) -> str:
        return f"/services/data/v{version}"

    # --- REST handlers ---------------------------------------------------------------------

    async def resources(request: Request, p: Params) -> Response:
        base = api_base(p["v"])
        names = ("sobjects", "query", "queryAll", "search", "limits")
        return JSONResponse({name: f"{base}/{name}" for name in names})

    async def query(request: Request, p: Params) -> Response:
        soql = request.query_params.get("q")
        if not soql:
            raise SalesforceError(400, "MALFORMED_QUERY", "A query string has to be specified")
        include_deleted = p["endpoint"] == "queryAll"
        stats["query"] += 1
        base = api_base(p["v"])
        records = org.query(soql, include_deleted, base)
        return JSONResponse(org.page(records, 0, _batch_size(request), f"{base}/{p['endpoint']}"))

    async def query_more(request: Request, p: Params) -> Response:
        stats["query_more"] += 1
        path = f"{api_base(p['v'])}/{p['endpoint']}"
        return JSONResponse(org.more(p["locator"], _batch_size(request), path))

    async def describe_global(request: Request, p: Params) -> Response:
        base = api_base(p["v"])
        return JSONResponse(
            {
                "encoding": "UTF-8",
                "maxBatchSize": 200,
                "sobjects": [
                    {
                        "name": t.name,
                        "label": t.name,
                        "keyPrefix": t.key_prefix,
                        "queryable": True,
                        "urls": {"sobject": f"{base}/sobjects/{t.name}"},
                    }
                    for t in SCHEMA.values()
                ],
            }
        )

    def describe_type(type_: SObjectType) -> dict[str, Any]:
        return {
            "name": type_.name,
            "label": type_.name,
            "keyPrefix": type_.key_prefix,
            "fields": [
                {
                    "name": f.name,
                    "type": f.type,
                    "externalId": f.external_id,
                    "updateable": f.updateable,
                    "createable": f.updateable,
                    "nillable": not f.required,
                    "referenceTo": [f.reference_to] if f.reference_to else [],
                    "relationshipName": f.relationship_name,
                    "picklistValues": [
                        {"value": v, "label": v, "active": True} for v in f.picklist or ()
                    ],
                }
                for f in type_.fields
            ],
            "childRelationships": [
                {"childSObject": c.child_type, "field": c.field, "relationshipName": c.name}
                for c in type_.children
            ],
        }

    async def describe(request: Request, p: Params) -> Response:
        return JSONResponse(describe_type(org.type(p["type"])))

    async def sobject_info(request: Request, p: Params) -> Response:
        type_ = org.type(p["type"])
        return JSONResponse({"objectDescribe": describe_type(type_), "recentItems": []})

    async def create(request: Request, p: Params) -> Response:
        type_ = org.type(p["type"])
        stats["create"] += 1
        new_id = org.create(type_, await _json_body(request))
        return JSONResponse({"id": new_id, "success": True, "errors": []}, status_code=201)

    async def record(request: Request, p: Params) -> Response:
        type_ = org.type(p["type"])
        if request.method == "GET":
            stats["retrieve"] += 1
            fields = request.query_params.get("fields")
            chosen = [f.strip() for f in fields.split(",") if f.strip()] if fields else None
            found = org.get(type_, p["id"])
            return JSONResponse(org.render_record(type_, found, api_base(p["v"]), chosen))
        if request.method == "PATCH":
            stats["update"] += 1
            org.update(type_, p["id"], await _json_body(request))
            return Response(status_code=204)
        stats["delete"] += 1
        org.delete(type_, p["id"])
        return Response(status_code=204)

    async def external(request: Request, p: Params) -> Response:
        type_ = org.type(p["type"])
        stats["retrieve" if request.method == "GET" else "upsert"] += 1
        matches = org.by_external_id(type_, p["field"], p["value"])
        if len(matches) > 1:
            urls = [f"{api_base(p['v'])}/sobjects/{type_.name}/{m['Id']}" for m in matches]
            return JSONResponse(urls, status_code=300)
        if request.method == "GET":
            if not matches:
                raise not_found()
            return JSONResponse(org.render_record(type_, matches[0], api_base(p["v"])))
        body = await _json_body(request)
        if matches:
            org.update(type_, matches[0]["Id"], body)
            return Response(status_code=204)
        created = org.create_with_external_id(type_, p["field"], p["value"], body)
        return JSONResponse(
            {"id": created, "success": True, "errors": [], "created": True}, status_code=201
        )

    version = r"v(?P<v>\d+\.\d)"
    sobject_name = r"(?P<type>[A-Za-z0-9_]+)"
    routes: list[tuple[re.Pattern[str], dict[str, Handler]]] = [
        (re.compile(rf"^{version}/?$"), {"GET": resources}),
        (re.compile(rf"^{version}/(?P<endpoint>query|queryAll)/?$"), {"GET": query}),
        (
            re.compile(rf"^{version}/(?P<endpoint>query|queryAll)/(?P<locator>[^/]+)$"),
            {"GET": query_more},
        ),
        (re.compile(rf"^{version}/sobjects/?$"), {"GET": describe_global}),
        (re.compile(rf"^{version}/sobjects/{sobject_name}/describe/?$"), {"GET": describe}),
        (
            re.compile(rf"^{version}/sobjects/{sobject_name}/?$"),
            {"GET": sobject_info, "POST": create},
        ),
        (
            re.compile(rf"^{version}/sobjects/{sobject_name}/(?P<id>[^/]+)$"),
            {"GET": record, "PATCH": record, "DELETE": record},
        ),
        (
            re.compile(rf"^{version}/sobjects/{sobject_name}/(?P<field>[^/]+)/(?P<value>[^/]+)$"),
            {"GET": external, "PATCH": external},
        ),
    ]

    def authorized(request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() in ("bearer", "oauth") and hmac.compare_digest(
            token.strip().encode(), session_id.encode()
        )

    async def rest(request: Request) -> Response:
        rest_path = request.path_params["rest"].lstrip("/")
        if not rest_path:
            return JSONResponse(
                [
                    {"label": RELEASES[v], "url": f"/services/data/v{v}", "version": v}
                    for v in API_VERSIONS
                ]
            )
        if not authorized(request):
            raise SalesforceError(401, "INVALID_SESSION_ID", "Session expired or invalid")
        for pattern, handlers in routes:
            match = pattern.match(rest_path)
            if match is None:
                continue
            params = {k: v for k, v in match.groupdict().items() if v is not None}
            if params["v"] not in API_VERSIONS:
                raise not_found()
            handler = handlers.get(request.method)
            if handler is None:
                raise SalesforceError(
                    405,
                    "METHOD_NOT_ALLOWED",
                    f"HTTP Method '{request.method}' not allowed. Allowed are "
                    + ",".join(handlers),
                )
            return await handler(request, params)
        raise not_found()

    # --- login ----------------------------------------------------------------------------

    def token_body(request: Request) -> dict[str, Any]:
        instance_url = _instance_url(request)
        identity = f"{instance_url}/id/{ORG_ID}/{USER_ID}"
        issued_at = str(int(time.time() * 1000))
        signature = base64.b64encode(
            hmac.new(
                SANDBOX_CLIENT_SECRET.encode(), (identity + issued_at).encode(), hashlib.sha256
            ).digest()
        ).decode()
        return {
            "access_token": session_id,
            "instance_url": instance_url,
            "id": identity,
            "token_type": "Bearer",
            "issued_at": issued_at,
            "signature": signature,
        }

    async def oauth_token(request: Request) -> Response:
        stats["oauth_token"] += 1
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        grant = form.get("grant_type")
        if grant not in ("password", "client_credentials"):
            return JSONResponse(
                {
                    "error": "unsupported_grant_type",
                    "error_description": "grant type not supported",
                },
                status_code=400,
            )
        if form.get("client_id") != SANDBOX_CLIENT_ID or not hmac.compare_digest(
            form.get("client_secret", "").encode(), SANDBOX_CLIENT_SECRET.encode()
        ):
            return JSONResponse(
                {"error": "invalid_client", "error_description": "invalid client credentials"},
                status_code=400,
            )
        if grant == "password" and not _password_ok(form.get("username"), form.get("password")):
            return JSONResponse(
                {"error": "invalid_grant", "error_description": "authentication failure"},
                status_code=400,
            )
        return JSONResponse(token_body(request))

    async def soap_login(request: Request) -> Response:
        stats["soap_login"] += 1
        try:
            root = SafeElementTree.fromstring(await request.body())
        except SafeElementTree.ParseError:
            return _soap_fault("INVALID_LOGIN", "Invalid SOAP request")
        if not _password_ok(_local_text(root, "username"), _local_text(root, "password")):
            return _soap_fault(
                "INVALID_LOGIN", "Invalid username, password, security token; or user locked out."
            )
        instance_url = _instance_url(request)
        server = f"{instance_url}/services/Soap/u/{request.path_params['version']}/{ORG_ID}"
        return _soap(
            "<loginResponse><result>"
            f"<metadataServerUrl>{instance_url}/services/Soap/m/"
            f"{request.path_params['version']}/{ORG_ID}</metadataServerUrl>"
            "<passwordExpired>false</passwordExpired><sandbox>true</sandbox>"
            f"<serverUrl>{server}</serverUrl><sessionId>{escape(session_id)}</sessionId>"
            f"<userId>{USER_ID}</userId><userInfo><organizationId>{ORG_ID}</organizationId>"
            f"<userName>{SANDBOX_USERNAME}</userName></userInfo>"
            "</result></loginResponse>"
        )

    # --- faults, errors, control endpoints --------------------------------------------------

    def guarded(handler: Callable[[Request], Awaitable[Response]]) -> Any:
        async def endpoint(request: Request) -> Response:
            stats["requests"] += 1
            kind, _rule = await faults.pick(request.method, request.url.path)
            try:
                if kind == "429":
                    raise SalesforceError(
                        403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."
                    )
                if kind == "500":
                    raise SalesforceError(
                        500,
                        "UNKNOWN_EXCEPTION",
                        "An unexpected error occurred. Please include this ErrorId if you "
                        "contact support: 1234567890-12345 (-1234567890)",
                    )
                return await handler(request)
            except SalesforceError as exc:
                errors[exc.error_code] += 1
                return error_response(exc)

        return endpoint

    async def set_faults(request: Request) -> Response:
        try:
            config = await read_json_model(request, FaultConfig)
        except ValidationError as exc:
            return JSONResponse({"error": exc.errors(include_url=False)}, status_code=400)
        faults.configure(config)
        return JSONResponse(config.model_dump())

    async def get_faults(request: Request) -> Response:
        return JSONResponse(faults.config.model_dump())

    async def reset(request: Request) -> Response:
        org.reset()
        faults.reset()
        stats.clear()
        errors.clear()
        return JSONResponse({"reset": True})

    async def get_stats(request: Request) -> Response:
        return JSONResponse(
            {
                "requests": stats["requests"],
                "operations": {k: v for k, v in stats.items() if k != "requests"},
                "errors": dict(errors),
                "faults_injected": faults.injected,
                "records": org.counts(),
            }
        )

    return Starlette(
        routes=[
            Route(
                "/services/data{rest:path}",
                guarded(rest),
                methods=["GET", "POST", "PATCH", "DELETE", "PUT"],
            ),
            Route("/services/oauth2/token", guarded(oauth_token), methods=["POST"]),
            Route("/services/Soap/u/{version}", guarded(soap_login), methods=["POST"]),
            Route("/_sandbox/faults", set_faults, methods=["POST"]),
            Route("/_sandbox/faults", get_faults, methods=["GET"]),
            Route("/_sandbox/reset", reset, methods=["POST"]),
            Route("/_sandbox/stats", get_stats, methods=["GET"]),
        ],
        middleware=[Middleware(BodyLimitMiddleware, limit=max_body_bytes, too_large=_too_large)],
    )
