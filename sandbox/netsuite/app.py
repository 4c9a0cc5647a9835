"""The NetSuite emulator's HTTP surface: REST record service, SuiteQL, TBA, sandbox controls.

Served paths are NetSuite's, under ``/services/rest``:

- ``GET|POST /record/v1/{type}``, ``GET|PATCH|DELETE /record/v1/{type}/{id}``,
  ``GET|PUT|PATCH|DELETE /record/v1/{type}/eid:{externalId}`` (``PUT``: upsert) for
  ``customer`` and ``invoice``; ``GET`` for ``serviceitem``, ``currency``, ``subsidiary``.
  Writes answer ``204 No Content`` with the record's address in ``Location``.
- ``POST /query/v1/suiteql`` (header ``Prefer: transient``; ``limit`` / ``offset``) for the
  subset in ``sandbox.netsuite.suiteql`` over ``item``, ``currency``, ``subsidiary``,
  ``customer`` and ``transaction``.

Every API request must carry token-based authentication (``sandbox.netsuite.tba``); a wrong
signature, an unknown token, a stale timestamp or a nonce seen before is ``401 INVALID_LOGIN``.
Errors have NetSuite's shape (``o:errorDetails`` with ``detail``, ``o:errorCode`` and
``o:errorPath``). More requests in flight than the account's concurrency limit are refused with
``429 CONCURRENCY_LIMIT_EXCEEDED`` (no ``Retry-After``, as NetSuite).

Sandbox controls (no authentication): ``POST /_sandbox/reset``, ``GET|POST /_sandbox/faults``,
``GET /_sandbox/requests`` (what was received, with the reason a request was refused),
``GET /_sandbox/records`` (every customer and invoice), ``GET /_sandbox/stats``,
``POST /_sandbox/config`` (``{"concurrency_limit": n}``), ``PUT|DELETE /_sandbox/items/{sku}``
(add, change or remove an item), ``PUT /_sandbox/subsidiaries/{id}`` (``{"currencies":
["USD", ...]}``), ``POST /_sandbox/hold`` / ``POST /_sandbox/release`` (API requests wait inside
their concurrency slot until released, so a test can fill the slots without timing).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from pydantic import BaseModel, Field, ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from qtc.catalog import load_catalog
from qtc.models import Catalog
from runtime.asgi import MAX_BODY_BYTES, BodyLimitMiddleware
from sandbox.common import FaultConfig, Faults, StateStore, read_json_model
from sandbox.netsuite.records import RECORD_TYPES, WRITABLE, Account, NsError, seed
from sandbox.netsuite.suiteql import SuiteQLError, run_query
from sandbox.netsuite.tba import AuthFailure, Credentials, TbaVerifier

SANDBOX_CREDENTIALS = Credentials(
    account="SANDBOX",
    consumer_key="sandbox-ns-consumer-key",
    consumer_secret="sandbox-ns-consumer-secret",
    token_id="sandbox-ns-token-id",
    token_secret="sandbox-ns-token-secret",
)
# A Tier-1 account without SuiteCloud Plus licences: 15 requests in flight.
DEFAULT_CONCURRENCY_LIMIT = 15
SUITEQL_MAX_LIMIT = 1000
REQUEST_LOG_SIZE = 2000

_RFC2616 = "https://www.w3.org/Protocols/rfc2616/rfc2616-sec10.html"
# The problem types NetSuite sends with each status (its REST error handling documentation).
_TYPES = {
    400: (_RFC2616 + "#sec10.4.1", "Bad Request"),
    401: (_RFC2616 + "#sec10.4.2", "Unauthorized"),
    403: (_RFC2616 + "#sec10.4.4", "Forbidden"),
    404: (_RFC2616 + "#sec10.4.5", "Not Found"),
    405: (_RFC2616 + "#sec10.4.6", "Method Not Allowed"),
    413: (_RFC2616 + "#sec10.4.14", "Request Entity Too Large"),
    429: ("https://tools.ietf.org/html/rfc6585#section-4", "Too Many Requests"),
    500: (_RFC2616 + "#sec10.5.1", "Internal Server Error"),
}
ERROR_MEDIA = "application/vnd.oracle.resource+json; type=error"
INVALID_LOGIN_DETAIL = (
    "Invalid login attempt. For more details, see the Login Audit Trail in the NetSuite UI at "
    "Setup > Users/Roles > User Management > View Login Audit Trail."
)


def ns_error(error: NsError) -> Response:
    kind, title = _TYPES.get(error.status, _TYPES[400])
    detail: dict[str, Any] = {"detail": error.detail, "o:errorCode": error.code}
    if error.path:
        detail["o:errorPath"] = error.path
    body = {"type": kind, "title": title, "status": error.status, "o:errorDetails": [detail]}
    return Response(json.dumps(body), status_code=error.status, media_type=ERROR_MEDIA)


def _resource(body: dict[str, Any], kind: str = "singular") -> Response:
    return Response(
        json.dumps(body, default=float),
        media_type=f"application/vnd.oracle.resource+json; type={kind}",
    )


class SandboxConfig(BaseModel):
    concurrency_limit: int = Field(DEFAULT_CONCURRENCY_LIMIT, ge=0, le=1000)


class ItemControl(BaseModel):
    displayName: str | None = None  # NetSuite's field names
    isInactive: bool = False
    taxRate: Decimal = Decimal(0)


class SubsidiaryControl(BaseModel):
    currencies: list[str]


def _initial_factory(catalog: Catalog | None) -> Callable[[], dict[str, Any]]:
    def initial() -> dict[str, Any]:
        state = seed(catalog)
        state["stats"] = {"received": 0, "unauthorized": 0, "throttled": 0, "errors": 0}
        return state

    return initial


class NetSuiteEmulator:
    """State, authentication, concurrency and faults behind the routes of one emulator."""

    def __init__(
        self,
        store: StateStore,
        credentials: Credentials,
        clock: Callable[[], float],
        concurrency_limit: int,
    ) -> None:
        self.store = store
        self.credentials = credentials
        self.verifier = TbaVerifier(credentials, clock)
        self.faults = Faults()
        self.config = SandboxConfig(concurrency_limit=concurrency_limit)
        self.initial_limit = concurrency_limit
        self.in_flight = 0
        self.log: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)
        self.held: asyncio.Event | None = None

    @property
    def account(self) -> Account:
        return Account(self.store.data, self.credentials.account)

    def count(self, name: str) -> None:
        with self.store.lock:
            self.store.data["stats"][name] += 1

    def api(self, handler: Callable[[Request], Awaitable[Response]]) -> Any:
        """Faults, TBA, the concurrency limit and NetSuite-shaped errors around one route."""

        async def endpoint(request: Request) -> Response:
            entry: dict[str, Any] = {
                "at": time.time(),
                "method": request.method,
                "path": request.url.path,
                "query": request.url.query,
            }
            self.log.append(entry)
            self.count("received")
            response = await self._guarded(request, handler, entry)
            entry["status"] = response.status_code
            if response.status_code >= 400:
                self.count("errors")
            return response

        return endpoint

    async def _guarded(
        self,
        request: Request,
        handler: Callable[[Request], Awaitable[Response]],
        entry: dict[str, Any],
    ) -> Response:
        fault, _rule = await self.faults.pick(request.method, request.url.path)
        if fault == "429":
            return self._throttled()
        if fault == "500":
            return ns_error(NsError(500, "UNEXPECTED_ERROR", "An unexpected error occurred."))
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        base_uri = f"{request.url.scheme}://{request.url.netloc.lower()}{raw_path.decode()}"
        try:
            self.verifier.verify(
                request.method, base_uri, request.url.query, request.headers.get("authorization")
            )
        except AuthFailure as exc:
            entry["auth"] = str(exc)
            self.count("unauthorized")
            response = ns_error(NsError(401, "INVALID_LOGIN", INVALID_LOGIN_DETAIL))
            response.headers["WWW-Authenticate"] = (
                f'OAuth realm="{self.credentials.account}", error="token_rejected", '
                'error_description="Invalid login attempt."'
            )
            return response
        entry["auth"] = "ok"
        if self.in_flight >= self.config.concurrency_limit:
            return self._throttled()
        self.in_flight += 1
        try:
            if self.held is not None:
                await self.held.wait()
            return await handler(request)
        except NsError as exc:
            return ns_error(exc)
        finally:
            self.in_flight -= 1

    def _throttled(self) -> Response:
        self.count("throttled")
        return ns_error(
            NsError(
                429,
                "CONCURRENCY_LIMIT_EXCEEDED",
                "Concurrent request limit exceeded. Request blocked.",
            )
        )


def _base(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}/services/rest"


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw or b"null", parse_float=Decimal)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NsError(400, "INVALID_CONTENT", "The request body is not valid JSON.") from exc
    if not isinstance(body, dict):
        raise NsError(400, "INVALID_CONTENT", "The request body must be a JSON object.")
    return body


def _record_type(request: Request, *, writing: bool = False) -> str:
    record_type = str(request.path_params["record_type"]).lower()
    if record_type not in RECORD_TYPES:
        raise NsError(
            404,
            "INVALID_RECORD_TYPE",
            f"Record type '{record_type}' does not exist or is not available.",
        )
    if writing and record_type not in WRITABLE:
        raise NsError(405, "INVALID_REQUEST", f"The {record_type} record cannot be written here.")
    return record_type


def _replace(request: Request) -> set[str]:
    values = parse_qs(request.url.query).get("replace", [])
    return {name.strip() for value in values for name in value.split(",") if name.strip()}


def create_app(
    state_file: Path | None = None,
    *,
    credentials: Credentials = SANDBOX_CREDENTIALS,
    catalog_path: Path | None = Path("catalog.toml"),
    clock: Callable[[], float] = time.time,
    concurrency_limit: int = DEFAULT_CONCURRENCY_LIMIT,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> Starlette:
    """Build the emulator; items are seeded from the catalog at ``catalog_path`` (one per SKU)."""
    catalog = load_catalog(catalog_path) if catalog_path and catalog_path.exists() else None
    store = StateStore(state_file, _initial_factory(catalog))
    emu = NetSuiteEmulator(store, credentials, clock, concurrency_limit)

    def not_found(record_type: str, key: str) -> NsError:
        if key.startswith("eid:"):
            detail = f"Record of type {record_type} with external ID '{key[4:]}' does not exist."
        else:
            detail = "The record instance does not exist. Provide a valid record instance ID."
        return NsError(404, "NONEXISTENT_ID", detail)

    def key_of(request: Request) -> str:
        return str(request.path_params["key"])

    async def list_records(request: Request) -> Response:
        record_type = _record_type(request)
        params = parse_qs(request.url.query)
        limit = int(params.get("limit", ["1000"])[0])
        offset = int(params.get("offset", ["0"])[0])
        with store.lock:
            ids = sorted(emu.account.table(record_type), key=int)
        page = ids[offset : offset + limit]
        base = _base(request)
        return _resource(
            {
                "links": [{"rel": "self", "href": f"{base}/record/v1/{record_type}"}],
                "count": len(page),
                "hasMore": offset + len(page) < len(ids),
                "items": [
                    {
                        "links": [
                            {"rel": "self", "href": f"{base}/record/v1/{record_type}/{record_id}"}
                        ],
                        "id": record_id,
                    }
                    for record_id in page
                ],
                "offset": offset,
                "totalResults": len(ids),
            },
            "collection",
        )

    def written(request: Request, record_type: str, record_id: str) -> Response:
        store.save()
        location = f"{_base(request)}/record/v1/{record_type}/{record_id}"
        return Response(status_code=204, headers={"Location": location})

    async def create_record(request: Request) -> Response:
        record_type = _record_type(request, writing=True)
        body = await _json_body(request)
        with store.lock:
            record_id = emu.account.create(record_type, body, None)
        return written(request, record_type, record_id)

    async def get_record(request: Request) -> Response:
        record_type, key = _record_type(request), key_of(request)
        expand = parse_qs(request.url.query).get("expandSubResources", ["false"])[0] == "true"
        with store.lock:
            found = emu.account.find(record_type, key)
            if found is None:
                raise not_found(record_type, key)
            body = emu.account.render(record_type, found[0], _base(request), expand=expand)
        return _resource(body)

    async def upsert_record(request: Request) -> Response:
        record_type, key = _record_type(request, writing=True), key_of(request)
        if not key.startswith("eid:"):
            raise NsError(
                405,
                "INVALID_REQUEST",
                "PUT is only for upsert by external ID: /record/v1/{type}/eid:{externalId}.",
            )
        body = await _json_body(request)
        with store.lock:
            found = emu.account.find(record_type, key)
            if found is None:
                record_id = emu.account.create(record_type, body, key[4:])
            else:
                record_id = found[0]
                emu.account.update(record_type, record_id, body, _replace(request))
        return written(request, record_type, record_id)

    async def update_record(request: Request) -> Response:
        record_type, key = _record_type(request, writing=True), key_of(request)
        body = await _json_body(request)
        with store.lock:
            found = emu.account.find(record_type, key)
            if found is None:
                raise not_found(record_type, key)
            emu.account.update(record_type, found[0], body, _replace(request))
        return written(request, record_type, found[0])

    async def delete_record(request: Request) -> Response:
        record_type, key = _record_type(request, writing=True), key_of(request)
        with store.lock:
            found = emu.account.find(record_type, key)
            if found is None:
                raise not_found(record_type, key)
            emu.account.delete(record_type, found[0])
            store.save()
        return Response(status_code=204)

    async def suiteql(request: Request) -> Response:
        if request.headers.get("prefer", "").strip().lower() != "transient":
            raise NsError(
                400,
                "INVALID_HEADER",
                "SuiteQL requests need the header 'Prefer: transient'.",
                "Prefer",
            )
        body = await _json_body(request)
        query = body.get("q")
        if not isinstance(query, str) or not query.strip():
            raise NsError(400, "INVALID_PARAMETER", 'The body must be {"q": "<SuiteQL>"}.', "q")
        params = parse_qs(request.url.query)
        try:
            limit = int(params.get("limit", [str(SUITEQL_MAX_LIMIT)])[0])
            offset = int(params.get("offset", ["0"])[0])
        except ValueError as exc:
            raise NsError(400, "INVALID_PARAMETER", "limit and offset are integers.") from exc
        if not 1 <= limit <= SUITEQL_MAX_LIMIT or offset < 0:
            raise NsError(
                400, "INVALID_PARAMETER", f"limit must be 1-{SUITEQL_MAX_LIMIT}, offset >= 0."
            )
        with store.lock:
            try:
                rows = run_query(query, emu.account.suiteql_table)
            except SuiteQLError as exc:
                raise NsError(
                    400,
                    "INVALID_PARAMETER",
                    "Invalid search query. Detailed unprocessed description follows. "
                    f"Search error occurred: {exc}.",
                ) from exc
        page = rows[offset : offset + limit]
        href = f"{_base(request)}/query/v1/suiteql"
        links = [{"rel": "self", "href": f"{href}?limit={limit}&offset={offset}"}]
        has_more = offset + len(page) < len(rows)
        if has_more:
            links.append({"rel": "next", "href": f"{href}?limit={limit}&offset={offset + limit}"})
        return _resource(
            {
                "links": links,
                "count": len(page),
                "hasMore": has_more,
                "items": [{"links": [], **row} for row in page],
                "offset": offset,
                "totalResults": len(rows),
            },
            "collection",
        )

    # --- sandbox controls ------------------------------------------------------------------

    async def reset(request: Request) -> Response:
        store.reset()
        emu.faults.reset()
        emu.config = SandboxConfig(concurrency_limit=emu.initial_limit)
        emu.log.clear()
        if emu.held is not None:
            emu.held.set()
            emu.held = None
        return JSONResponse({"reset": True})

    async def set_faults(request: Request) -> Response:
        try:
            config = await read_json_model(request, FaultConfig)
        except ValidationError as exc:
            return JSONResponse({"errors": exc.errors(include_url=False)}, status_code=400)
        emu.faults.configure(config)
        return JSONResponse(config.model_dump())

    async def get_faults(request: Request) -> Response:
        return JSONResponse(emu.faults.config.model_dump())

    async def set_config(request: Request) -> Response:
        try:
            emu.config = await read_json_model(request, SandboxConfig)
        except ValidationError as exc:
            return JSONResponse({"errors": exc.errors(include_url=False)}, status_code=400)
        return JSONResponse(emu.config.model_dump())

    async def requests_received(request: Request) -> Response:
        return JSONResponse({"data": list(emu.log)})

    async def records(request: Request) -> Response:
        base = _base(request)
        with store.lock:
            account = emu.account
            body = {
                name: [
                    account.render(name, record_id, base, expand=True)
                    for record_id in sorted(account.table(name), key=int)
                ]
                for name in ("customer", "invoice", "serviceitem")
            }
        return Response(json.dumps(body, default=float), media_type="application/json")

    async def stats(request: Request) -> Response:
        with store.lock:
            numbers = dict(store.data["stats"])
            numbers["customers"] = len(emu.account.table("customer"))
            numbers["invoices"] = len(emu.account.table("invoice"))
        numbers["in_flight"] = emu.in_flight
        numbers["faults_injected"] = emu.faults.injected
        return JSONResponse(numbers)

    async def put_item(request: Request) -> Response:
        sku = request.path_params["sku"]
        try:
            control = await read_json_model(request, ItemControl)
        except ValidationError as exc:
            return JSONResponse({"errors": exc.errors(include_url=False)}, status_code=400)
        with store.lock:
            items = emu.account.table("serviceitem")
            item_id = next((i for i, r in items.items() if r["itemId"] == sku), None)
            if item_id is None:
                item_id = emu.account.new_id()
            items[item_id] = {
                "itemId": sku,
                "displayName": control.displayName or sku,
                "isInactive": control.isInactive,
                "taxRate": str(control.taxRate),
            }
            store.save()
        return JSONResponse({"id": item_id, **items[item_id]})

    async def delete_item(request: Request) -> Response:
        sku = request.path_params["sku"]
        with store.lock:
            items = emu.account.table("serviceitem")
            for item_id in [i for i, r in items.items() if r["itemId"] == sku]:
                del items[item_id]
            store.save()
        return Response(status_code=204)

    async def put_subsidiary(request: Request) -> Response:
        try:
            control = await read_json_model(request, SubsidiaryControl)
        except ValidationError as exc:
            return JSONResponse({"errors": exc.errors(include_url=False)}, status_code=400)
        with store.lock:
            subsidiary = emu.account.table("subsidiary").get(request.path_params["id"])
            if subsidiary is None:
                return JSONResponse({"error": "no such subsidiary"}, status_code=404)
            by_symbol = {r["symbol"]: i for i, r in emu.account.table("currency").items()}
            unknown = [c for c in control.currencies if c.upper() not in by_symbol]
            if unknown:
                return JSONResponse({"error": f"unknown currencies {unknown}"}, status_code=400)
            subsidiary["currencies"] = [by_symbol[c.upper()] for c in control.currencies]
            store.save()
        return JSONResponse(subsidiary)

    async def hold(request: Request) -> Response:
        if emu.held is None:
            emu.held = asyncio.Event()
        return JSONResponse({"held": True})

    async def release(request: Request) -> Response:
        if emu.held is not None:
            emu.held.set()
            emu.held = None
        return JSONResponse({"held": False})

    def wrap(handler: Callable[[Request], Awaitable[Response]]) -> Any:
        return emu.api(handler)

    record = "/services/rest/record/v1/{record_type}"
    return Starlette(
        routes=[
            Route(record, wrap(list_records), methods=["GET"]),
            Route(record, wrap(create_record), methods=["POST"]),
            Route(record + "/{key}", wrap(get_record), methods=["GET"]),
            Route(record + "/{key}", wrap(upsert_record), methods=["PUT"]),
            Route(record + "/{key}", wrap(update_record), methods=["PATCH"]),
            Route(record + "/{key}", wrap(delete_record), methods=["DELETE"]),
            Route("/services/rest/query/v1/suiteql", wrap(suiteql), methods=["POST"]),
            Route("/_sandbox/reset", reset, methods=["POST"]),
            Route("/_sandbox/faults", set_faults, methods=["POST"]),
            Route("/_sandbox/faults", get_faults, methods=["GET"]),
            Route("/_sandbox/config", set_config, methods=["POST"]),
            Route("/_sandbox/requests", requests_received, methods=["GET"]),
            Route("/_sandbox/records", records, methods=["GET"]),
            Route("/_sandbox/stats", stats, methods=["GET"]),
            Route("/_sandbox/items/{sku}", put_item, methods=["PUT"]),
            Route("/_sandbox/items/{sku}", delete_item, methods=["DELETE"]),
            Route("/_sandbox/subsidiaries/{id}", put_subsidiary, methods=["PUT"]),
            Route("/_sandbox/hold", hold, methods=["POST"]),
            Route("/_sandbox/release", release, methods=["POST"]),
        ],
        middleware=[
            Middleware(
                BodyLimitMiddleware,
                limit=max_body_bytes,
                too_large=lambda: ns_error(
                    NsError(413, "REQUEST_TOO_LARGE", "The request body is too large.")
                ),
            )
        ],
    )
