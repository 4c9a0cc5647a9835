"""A local Chargebee API v2 (Product Catalog 2.0) that the official ``chargebee`` SDK talks to.

The SDK builds ``https://{site}.chargebee.com/api/v2``; point it here by replacing its endpoint::

    from integrations.chargebee.client import chargebee_client
    cb = chargebee_client(
        api_key="test_sandbox_chargebee", site="sandbox", api_base="http://127.0.0.1:12117"
    )
    cb.Customer.create({"id": "acme", "email": "ap@acme.example"})

What it emulates: form-encoded requests as the SDK sends them (bracketed sub-objects and indexed
lists, ``meta_data`` as a JSON document), top-level parameter names checked against the SDK's
typed ``*Params``, HTTP basic auth with the API key, Chargebee's error body (``message``, ``type``,
``api_error_code``, ``param``), list filters (``[is]``, ``[in]``, ``[after]``...), ``sort_by`` and
``limit`` / ``offset`` pagination with ``next_offset``, ``chargebee-idempotency-key`` (kept 30
minutes, replayed with ``chargebee-idempotency-replayed: true``; at most 100 characters), and the
resources in ``sandbox.chargebee.backend``.

Sandbox control plane (no API key): ``POST /_sandbox/faults`` (``sandbox.common.FaultConfig``),
``GET /_sandbox/faults``, ``POST /_sandbox/reset``, ``GET /_sandbox/stats``, ``GET
/_sandbox/requests`` (every API request received: method, path, parameters, idempotency key,
status, replayed), ``GET /_sandbox/emails`` (invoices e-mailed) and ``POST /_sandbox/clock``
(``{"advance_s": N}``: move the site's clock; renewals and ramps fall due).

Deliberate differences from a real site, each chosen for a deterministic sandbox:

- the site is fixed: USD, EUR and GBP enabled, no taxes, no payment methods, automatic invoice
  e-mails off (invoices are e-mailed by ``send_email`` only);
- a parameter that is not in the SDK's typed parameters of the operation is refused (400
  ``param_wrong_value``) rather than ignored, so an adapter's typo cannot go unnoticed;
- an idempotency key reused with other parameters is refused with 400 ``invalid_request``;
- estimates, coupons, taxes, tiered pricing and payments are not emulated.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from chargebee.models.customer.operations import Customer
from chargebee.models.email_log.operations import EmailLog
from chargebee.models.invoice.operations import Invoice
from chargebee.models.item.operations import Item
from chargebee.models.item_family.operations import ItemFamily
from chargebee.models.item_price.operations import ItemPrice
from chargebee.models.ramp.operations import Ramp
from chargebee.models.subscription.operations import Subscription
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runtime.asgi import MAX_BODY_BYTES, BodyLimitMiddleware
from sandbox.chargebee import errors as err
from sandbox.chargebee.backend import ChargebeeBackend, initial_state
from sandbox.chargebee.forms import parse_body, parse_pairs
from sandbox.common import FaultConfig, Faults, StateStore

logger = logging.getLogger(__name__)

API = "/api/v2"
IDEMPOTENCY_HEADER = "chargebee-idempotency-key"
REPLAYED_HEADER = "chargebee-idempotency-replayed"
IDEMPOTENCY_WINDOW_S = 30 * 60
MAX_KEY_LENGTH = 100
MAX_RECEIVED = 5000

Op = Callable[[ChargebeeBackend, dict[str, Any], dict[str, str]], dict[str, Any]]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    params: type | None
    op: Op


def _allowed(params: type | None) -> frozenset[str] | None:
    return frozenset(params.__annotations__) if params is not None else None


def _one(kind: str, name: str) -> Op:
    def op(b: ChargebeeBackend, p: dict[str, Any], a: dict[str, str]) -> dict[str, Any]:
        return {name: b.entity(kind, b.get(kind, a["id"], name.replace("_", " ").capitalize()))}

    return op


def _list(
    kind: str,
    name: str,
    filters: dict[str, str],
    sorts: tuple[str, ...] = ("created_at", "updated_at"),
    scope: Callable[[dict[str, Any], dict[str, str]], bool] | None = None,
    extra: Callable[[ChargebeeBackend, dict[str, Any]], dict[str, Any]] | None = None,
) -> Op:
    def op(b: ChargebeeBackend, p: dict[str, Any], a: dict[str, str]) -> dict[str, Any]:
        objects = [o for o in b.data[kind].values() if scope is None or scope(o, a)]
        page, next_offset = b.list_objects(kind, objects, p, filters, sorts)
        rows = [{name: b.entity(kind, o), **(extra(b, o) if extra else {})} for o in page]
        body: dict[str, Any] = {"list": rows}
        if next_offset is not None:
            body["next_offset"] = next_offset
        return body

    return op


def _with_customer(b: ChargebeeBackend, sub: dict[str, Any]) -> dict[str, Any]:
    return {"customer": b.entity("customers", b.data["customers"][sub["customer_id"]])}


def _create_subscription(
    b: ChargebeeBackend, p: dict[str, Any], a: dict[str, str]
) -> dict[str, Any]:
    sub = b.create_subscription(a["id"], p)
    body = {
        "subscription": b.entity("subscriptions", sub),
        "customer": b.entity("customers", b.data["customers"][sub["customer_id"]]),
    }
    first = [i for i in b.data["invoices"].values() if i.get("subscription_id") == sub["id"]]
    if first:
        body["invoice"] = b.entity("invoices", first[0])
    return body


def _email_logs(b: ChargebeeBackend, p: dict[str, Any], a: dict[str, str]) -> dict[str, Any]:
    b.get("customers", a["id"], "Customer")
    logs = [
        {**log, "created_at": log["sent_on"]}
        for log in b.data["email_logs"]
        if log["customer_id"] == a["id"]
    ]
    page, next_offset = b.list_objects(
        "email_logs", logs, p, {"sent_on": "timestamp"}, ("created_at",)
    )
    rows = [
        {"email_log": {k: v for k, v in log.items() if k != "created_at" and not k.startswith("_")}}
        for log in page
    ]
    body: dict[str, Any] = {"list": rows}
    if next_offset is not None:
        body["next_offset"] = next_offset
    return body


_INVOICE_FILTERS = {
    "id": "string",
    "customer_id": "string",
    "subscription_id": "string",
    "status": "enum",
    "recurring": "boolean",
    "date": "timestamp",
    "updated_at": "timestamp",
}

ENDPOINTS: list[Endpoint] = [
    Endpoint(
        "POST",
        "/customers",
        Customer.CreateParams,
        lambda b, p, a: {"customer": b.entity("customers", b.create_customer(p))},
    ),
    Endpoint(
        "GET",
        "/customers",
        Customer.ListParams,
        _list(
            "customers",
            "customer",
            {
                "id": "string",
                "email": "string",
                "company": "string",
                "first_name": "string",
                "created_at": "timestamp",
                "updated_at": "timestamp",
            },
        ),
    ),
    Endpoint("GET", "/customers/{id}", None, _one("customers", "customer")),
    Endpoint("GET", "/customers/{id}/email_logs", EmailLog.EmailLogsForCustomerParams, _email_logs),
    Endpoint(
        "POST",
        "/item_families",
        ItemFamily.CreateParams,
        lambda b, p, a: {"item_family": b.entity("item_families", b.create_item_family(p))},
    ),
    Endpoint("GET", "/item_families/{id}", None, _one("item_families", "item_family")),
    Endpoint(
        "POST",
        "/items",
        Item.CreateParams,
        lambda b, p, a: {"item": b.entity("items", b.create_item(p))},
    ),
    Endpoint("GET", "/items/{id}", None, _one("items", "item")),
    Endpoint(
        "GET",
        "/items",
        Item.ListParams,
        _list(
            "items",
            "item",
            {"id": "string", "item_family_id": "string", "type": "enum", "name": "string"},
            ("name", "id", "updated_at"),
        ),
    ),
    Endpoint(
        "POST",
        "/item_prices",
        ItemPrice.CreateParams,
        lambda b, p, a: {"item_price": b.entity("item_prices", b.create_item_price(p))},
    ),
    Endpoint("GET", "/item_prices/{id}", None, _one("item_prices", "item_price")),
    Endpoint(
        "GET",
        "/item_prices",
        ItemPrice.ListParams,
        _list(
            "item_prices",
            "item_price",
            {
                "id": "string",
                "item_id": "string",
                "item_type": "enum",
                "currency_code": "string",
                "period_unit": "enum",
                "status": "enum",
            },
            ("name", "id", "updated_at"),
        ),
    ),
    Endpoint(
        "POST",
        "/customers/{id}/subscription_for_items",
        Subscription.CreateWithItemsParams,
        _create_subscription,
    ),
    Endpoint(
        "GET",
        "/subscriptions",
        Subscription.ListParams,
        _list(
            "subscriptions",
            "subscription",
            {
                "id": "string",
                "customer_id": "string",
                "status": "enum",
                "created_at": "timestamp",
                "updated_at": "timestamp",
            },
            extra=_with_customer,
        ),
    ),
    Endpoint(
        "GET",
        "/subscriptions/{id}",
        None,
        lambda b, p, a: {
            "subscription": b.entity(
                "subscriptions", sub := b.get("subscriptions", a["id"], "Subscription")
            ),
            **_with_customer(b, sub),
        },
    ),
    Endpoint(
        "POST",
        "/subscriptions/{id}/create_ramp",
        Ramp.CreateForSubscriptionParams,
        lambda b, p, a: {"ramp": b.entity("ramps", b.create_ramp(a["id"], p))},
    ),
    Endpoint("GET", "/ramps/{id}", None, _one("ramps", "ramp")),
    Endpoint(
        "GET",
        "/ramps",
        Ramp.ListParams,
        _list(
            "ramps",
            "ramp",
            {
                "subscription_id": "string",
                "status": "enum",
                "effective_from": "timestamp",
                "updated_at": "timestamp",
            },
            ("effective_from", "created_at", "updated_at"),
        ),
    ),
    Endpoint(
        "POST",
        "/invoices/create_for_charge_items_and_charges",
        Invoice.CreateForChargeItemsAndChargesParams,
        lambda b, p, a: {"invoice": b.entity("invoices", b.create_invoice_for_items(p))},
    ),
    Endpoint(
        "GET",
        "/invoices",
        Invoice.ListParams,
        _list("invoices", "invoice", _INVOICE_FILTERS, ("date", "updated_at")),
    ),
    Endpoint("GET", "/invoices/{id}", Invoice.RetrieveParams, _one("invoices", "invoice")),
    Endpoint(
        "POST",
        "/invoices/{id}/close",
        Invoice.CloseParams,
        lambda b, p, a: {"invoice": b.entity("invoices", b.close_invoice(a["id"]))},
    ),
    Endpoint(
        "POST",
        "/invoices/{id}/void",
        Invoice.VoidInvoiceParams,
        lambda b, p, a: {"invoice": b.entity("invoices", b.void_invoice(a["id"]))},
    ),
    Endpoint(
        "POST",
        "/invoices/{id}/send_email",
        None,
        lambda b, p, a: {
            "email_logs": [
                {k: v for k, v in log.items() if not k.startswith("_")}
                for log in b.send_email(a["id"])
            ]
        },
    ),
]


class _ControlBody(BaseModel):
    advance_s: float = 0.0


class MovableClock:
    """The site's clock: the given clock plus what ``POST /_sandbox/clock`` moved it by."""

    def __init__(self, base: Callable[[], float]) -> None:
        self.base = base
        self.offset = 0.0

    def __call__(self) -> float:
        return self.base() + self.offset


class ChargebeeEmulator:
    def __init__(self, store: StateStore, api_key: str, clock: Callable[[], float]) -> None:
        self.store = store
        self.api_key = api_key
        self.clock = MovableClock(clock)
        self.backend = ChargebeeBackend(store, self.clock)
        self.faults = Faults()
        self.requests: Counter[str] = Counter()
        self.received: list[dict[str, Any]] = []

    def _authenticate(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("basic "):
            raise err.authentication_failed()
        try:
            user = base64.b64decode(header[6:]).decode("latin1").split(":", 1)[0]
        except ValueError as exc:
            raise err.authentication_failed() from exc
        if user != self.api_key:
            raise err.authentication_failed()

    def route(self, endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        allowed = _allowed(endpoint.params)

        async def handle(request: Request) -> Response:
            self.requests[f"{endpoint.method} {endpoint.path}"] += 1
            fault, rule = await self.faults.pick(request.method, request.url.path)
            if fault == "429" and rule is not None:
                return err.rate_limited(rule.retry_after_s).response()
            if fault == "500":
                return err.internal_error().response()
            body = await request.body()
            key = request.headers.get(IDEMPOTENCY_HEADER)
            try:
                self._authenticate(request)
                if endpoint.method == "GET":
                    params = parse_pairs(parse_qsl(request.url.query, keep_blank_values=True))
                else:
                    params = parse_body(body)
                if allowed is not None:
                    for name in params:
                        if name not in allowed:
                            raise err.wrong_value(name, "unknown parameter for this operation")
            except err.ChargebeeError as exc:
                self._record(request, {}, key, exc.status, replayed=False)
                return exc.response()
            path_args = dict(request.path_params)
            return await run_in_threadpool(
                self._execute, request, endpoint, params, path_args, body, key
            )

        return handle

    def _execute(
        self,
        request: Request,
        endpoint: Endpoint,
        params: dict[str, Any],
        path_args: dict[str, str],
        body: bytes,
        key: str | None,
    ) -> Response:
        with self.store.lock:
            now = self.clock()
            if key is not None and endpoint.method == "POST":
                if len(key) > MAX_KEY_LENGTH:
                    exc = err.wrong_value(
                        IDEMPOTENCY_HEADER, f"cannot be more than {MAX_KEY_LENGTH} characters"
                    )
                    self._record(request, params, key, exc.status, replayed=False)
                    return exc.response()
                fingerprint = hashlib.sha256(request.url.path.encode() + b"\n" + body).hexdigest()
                stored = self.store.data["idempotency"].get(key)
                if stored is not None and now - stored["at"] < IDEMPOTENCY_WINDOW_S:
                    if stored["fingerprint"] != fingerprint:
                        exc = err.ChargebeeError(
                            400,
                            "invalid_request",
                            f"The idempotency key {key} was used with other parameters.",
                        )
                        self._record(request, params, key, exc.status, replayed=False)
                        return exc.response()
                    self._record(request, params, key, stored["status"], replayed=True)
                    return JSONResponse(
                        stored["body"],
                        status_code=stored["status"],
                        headers={REPLAYED_HEADER: "true"},
                    )
            self.backend.advance_all()
            try:
                status, payload = 200, endpoint.op(self.backend, params, path_args)
            except err.ChargebeeError as exc:
                status, payload = exc.status, exc.body()
            if key is not None and endpoint.method == "POST" and status < 500 and status != 429:
                self.store.data["idempotency"][key] = {
                    "fingerprint": fingerprint,
                    "status": status,
                    "body": payload,
                    "at": now,
                }
            if endpoint.method == "POST":
                self.store.save()
            self._record(request, params, key, status, replayed=False)
            return JSONResponse(payload, status_code=status)

    def _record(
        self,
        request: Request,
        params: dict[str, Any],
        key: str | None,
        status: int,
        *,
        replayed: bool,
    ) -> None:
        self.received.append(
            {
                "method": request.method,
                "path": request.url.path,
                "params": params,
                "idempotency_key": key,
                "status": status,
                "replayed": replayed,
                "at": self.clock(),
            }
        )
        del self.received[:-MAX_RECEIVED]

    # --- control plane --------------------------------------------------------------------

    async def faults_endpoint(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                self.faults.configure(
                    FaultConfig.model_validate_json(await request.body() or b"{}")
                )
            except ValidationError as exc:
                return JSONResponse({"message": str(exc.errors()[0]["msg"])}, status_code=400)
        return JSONResponse(
            {"config": self.faults.config.model_dump(), "injected": self.faults.injected}
        )

    async def reset(self, request: Request) -> Response:
        with self.store.lock:
            self.store.reset()
            self.faults.reset()
            self.requests.clear()
            self.received.clear()
            self.clock.offset = 0.0
        return JSONResponse({"reset": True})

    async def clock_endpoint(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                body = _ControlBody.model_validate_json(await request.body() or b"{}")
            except ValidationError as exc:
                return JSONResponse({"message": str(exc.errors()[0]["msg"])}, status_code=400)
            with self.store.lock:
                self.clock.offset += body.advance_s
        return JSONResponse({"now": self.clock(), "offset_s": self.clock.offset})

    async def stats(self, request: Request) -> Response:
        data = self.store.data
        return JSONResponse(
            {
                "customers": len(data["customers"]),
                "subscriptions": len(data["subscriptions"]),
                "ramps": len(data["ramps"]),
                "invoices": len(data["invoices"]),
                "invoices_by_status": dict(Counter(i["status"] for i in data["invoices"].values())),
                "emails": len(data["email_logs"]),
                "requests": dict(self.requests),
                "faults_injected": self.faults.injected,
            }
        )

    async def received_endpoint(self, request: Request) -> Response:
        return JSONResponse({"requests": self.received})

    async def emails(self, request: Request) -> Response:
        return JSONResponse(
            {
                "emails": [
                    {
                        **{k: v for k, v in log.items() if not k.startswith("_")},
                        "invoice_id": log["_invoice_id"],
                    }
                    for log in self.store.data["email_logs"]
                ]
            }
        )

    async def health(self, request: Request) -> Response:
        return JSONResponse({"ok": True, "service": "chargebee"})

    def routes(self) -> list[Route]:
        routes = [Route(f"{API}{e.path}", self.route(e), methods=[e.method]) for e in ENDPOINTS]
        return [
            *routes,
            Route("/_sandbox/faults", self.faults_endpoint, methods=["GET", "POST"]),
            Route("/_sandbox/reset", self.reset, methods=["POST"]),
            Route("/_sandbox/clock", self.clock_endpoint, methods=["GET", "POST"]),
            Route("/_sandbox/stats", self.stats, methods=["GET"]),
            Route("/_sandbox/requests", self.received_endpoint, methods=["GET"]),
            Route("/_sandbox/emails", self.emails, methods=["GET"]),
            Route("/_sandbox/health", self.health, methods=["GET"]),
        ]


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return err.ChargebeeError(
            404, "resource_not_found", "The requested URL does not exist."
        ).response()
    return err.ChargebeeError(exc.status_code, "invalid_request", str(exc.detail)).response()


async def _unexpected(request: Request, exc: Exception) -> Response:
    logger.exception("chargebee emulator failed")
    return err.ChargebeeError(
        500, "internal_error", f"{type(exc).__name__}: {exc}", type=None
    ).response()


def create_app(
    state_file: Path | None = None,
    api_key: str = "test_sandbox_chargebee",
    *,
    clock: Callable[[], float] = time.time,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> Starlette:
    """Build the Chargebee emulator.

    Args:
        state_file: JSON file the site's state is written through to (survives a restart).
        api_key: the only API key accepted (HTTP basic user name).
        clock: the site's time; ``POST /_sandbox/clock`` moves it further.
        max_body_bytes: larger request bodies are refused with 413.
    """
    store = StateStore(state_file, initial_state)
    for key, value in initial_state().items():
        store.data.setdefault(key, value)
    emulator = ChargebeeEmulator(store, api_key, clock)

    def too_large() -> Response:
        return err.ChargebeeError(
            413, "invalid_request", f"The request body exceeds {max_body_bytes} bytes."
        ).response()

    app = Starlette(
        routes=emulator.routes(),
        middleware=[Middleware(BodyLimitMiddleware, limit=max_body_bytes, too_large=too_large)],
        exception_handlers={HTTPException: _http_error, Exception: _unexpected},
    )
    app.state.emulator = emulator
    return app
