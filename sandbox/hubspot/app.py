"""The HubSpot CRM emulator (Starlette), spoken to through the official ``hubspot-api-client``.

Point the SDK at it with ``HubSpot(access_token="sandbox-hubspot-token", host=<this server>)``.

Endpoints (HubSpot's own paths; ``{type}`` is ``deals``/``deal``/``0-3``, ``companies``,
``contacts``, ``line_items``, ``notes``):

- ``/crm/v3/objects/{type}``: GET (paged by ``after``, ``limit`` <= 100, ``properties``,
  ``associations``), POST (create, with ``associations``); ``.../{id}``: GET (``idProperty`` for a
  unique property), PATCH, DELETE; ``.../search`` (filterGroups, sorts, query, ``limit`` <= 200,
  at most 10,000 results); ``.../batch/read|create|update|archive`` (<= 100 inputs; 207 with
  ``errors`` when some ids do not exist).
- ``/crm/v3/properties/{type}`` (+ ``/{name}``, ``/batch/read|create``, ``/groups[/{name}]``).
- ``/crm/v4/objects/{type}/{id}/associations/{toType}`` (paged, labels), ``.../{toId}`` PUT with
  labels / DELETE, ``.../associations/default/{toType}/{toId}``; ``/crm/v4/associations/{from}/{to}/
  batch/read|create`` and ``.../labels`` (association label definitions).

Errors are HubSpot's JSON (``status``, ``message``, ``correlationId``, ``category``, optional
``subCategory``, ``errors[]``, ``context``) with its status codes: 401 ``INVALID_AUTHENTICATION``,
403 ``MISSING_SCOPES``, 404 ``OBJECT_NOT_FOUND``, 400 ``VALIDATION_ERROR``, 409
``OBJECT_ALREADY_EXISTS``, 429 ``RATE_LIMIT`` (with the ``X-HubSpot-RateLimit-*`` headers every
private-app answer carries), 500.

Sandbox controls (no token): ``/_sandbox/faults`` (``rate_429`` answers HubSpot's 429,
``rate_500`` a 500), ``/_sandbox/rate-limit`` (enforce the 10-second request budget),
``/_sandbox/scopes`` (the token's scopes), ``/_sandbox/webhooks`` (target URL, client secret,
subscriptions, delivery policy), ``/_sandbox/deliveries`` (webhook events and requests sent),
``/_sandbox/requests`` (the API requests received), ``/_sandbox/reset``, ``/_sandbox/stats``.
"""

from __future__ import annotations

import collections
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runtime.asgi import MAX_BODY_BYTES, BodyLimitMiddleware
from sandbox.common import FaultConfig, Faults, StateStore
from sandbox.hubspot.portal import (
    MAX_BATCH_INPUTS,
    HubSpotError,
    Portal,
    now_iso,
    type_from_path,
    validation,
)
from sandbox.hubspot.schema import OBJECT_TYPES, ObjectType
from sandbox.hubspot.webhooks import WebhookConfig, WebhookDelivery, WebhookUpdate

SANDBOX_TOKEN = "sandbox-hubspot-token"
SANDBOX_CLIENT_SECRET = "sandbox-hubspot-secret"
PORTAL_ID = 24_000_001
# A private app on a Professional portal: 190 requests per rolling 10 seconds, 625,000 a day.
TEN_SECOND_BUDGET = 190
DAILY_BUDGET = 625_000
ALL_SCOPES = frozenset(
    scope
    for t in OBJECT_TYPES
    for scope in (
        f"crm.objects.{t.plural}.read",
        f"crm.objects.{t.plural}.write",
        f"crm.schemas.{t.plural}.read",
        f"crm.schemas.{t.plural}.write",
    )
)
RECEIVED_KEPT = 2000

Endpoint = Callable[[Request], Awaitable[Response]]


class RateLimitConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enforced: bool = False
    per_10s: int = Field(TEN_SECOND_BUDGET, ge=1)


class ScopesUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scopes: list[str] | None = None  # None: every scope


def error_response(error: HubSpotError, headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {
        "status": "error",
        "message": error.message,
        "correlationId": str(uuid.uuid4()),
        "category": error.category,
    }
    if error.sub_category:
        body["subCategory"] = error.sub_category
    if error.errors is not None:
        body["errors"] = error.errors
    if error.context is not None:
        body["context"] = error.context
    return JSONResponse(body, status_code=error.status, headers=headers)


async def _json(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw or b"null")
    except json.JSONDecodeError as exc:
        raise validation(
            f"Invalid input JSON on line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None


def _object_body(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise validation("Invalid input JSON: expected an object")
    return value


def _inputs(body: Any) -> list[Any]:
    inputs = _object_body(body).get("inputs")
    if not isinstance(inputs, list):
        raise validation("Invalid input JSON: inputs must be a list")
    if len(inputs) > MAX_BATCH_INPUTS:
        raise validation(
            f"Batch input too large: at most {MAX_BATCH_INPUTS} inputs, got {len(inputs)}",
            [{"message": "too many inputs", "code": "TOO_MANY_INPUTS", "in": "inputs"}],
        )
    return inputs


def _csv(request: Request, name: str) -> list[str] | None:
    values = [
        part.strip()
        for raw in request.query_params.getlist(name)
        for part in raw.split(",")
        if part.strip()
    ]
    return values or None


def _batch(results: list[Any], errors: list[dict[str, Any]], started: str) -> JSONResponse:
    body: dict[str, Any] = {
        "status": "COMPLETE",
        "results": results,
        "startedAt": started,
        "completedAt": now_iso(),
    }
    if errors:
        body["errors"] = errors
        body["numErrors"] = len(errors)
    return JSONResponse(body, status_code=207 if errors else 200)


def _batch_error(category: str, message: str, context: dict[str, list[str]]) -> dict[str, Any]:
    return {
        "status": "error",
        "category": category,
        "message": message,
        "context": context,
        "errors": [],
        "links": {},
    }


class HubSpotEmulator:
    def __init__(self, store: StateStore, webhooks: WebhookConfig, token: str) -> None:
        self.store = store
        self.portal = Portal(store)
        self.delivery = WebhookDelivery(store, webhooks, PORTAL_ID)
        self.portal.listeners.append(self.delivery.on_change)
        self.initial_webhooks = webhooks
        self.token = token
        self.scopes: frozenset[str] = ALL_SCOPES
        self.faults = Faults()
        self.rate_limit = RateLimitConfig()
        self.window: collections.deque[float] = collections.deque()
        self.daily_used = 0
        self.received: collections.deque[dict[str, Any]] = collections.deque(maxlen=RECEIVED_KEPT)
        self.counts: collections.Counter[str] = collections.Counter()

    # --- the request pipeline ---------------------------------------------------------------

    def _rate_headers(self) -> dict[str, str]:
        now = time.monotonic()
        while self.window and self.window[0] <= now - 10:
            self.window.popleft()
        return {
            "X-HubSpot-RateLimit-Daily": str(DAILY_BUDGET),
            "X-HubSpot-RateLimit-Daily-Remaining": str(max(DAILY_BUDGET - self.daily_used, 0)),
            "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
            "X-HubSpot-RateLimit-Max": str(self.rate_limit.per_10s),
            "X-HubSpot-RateLimit-Remaining": str(
                max(self.rate_limit.per_10s - len(self.window), 0)
            ),
        }

    def _rate_limited(self, headers: dict[str, str]) -> JSONResponse:
        headers = {**headers, "X-HubSpot-RateLimit-Remaining": "0"}
        body = {
            "status": "error",
            "message": "You have reached your ten_secondly_rolling limit.",
            "errorType": "RATE_LIMIT",
            "correlationId": str(uuid.uuid4()),
            "policyName": "TEN_SECONDLY_ROLLING",
            "groupName": f"publicapi:private-app:{PORTAL_ID}",
        }
        return JSONResponse(body, status_code=429, headers=headers)

    def api(self, handler: Endpoint, scope: str) -> Endpoint:
        """Authenticate, check the scope, apply faults and the rate limit, render errors."""

        async def endpoint(request: Request) -> Response:
            headers: dict[str, str] = {}
            try:
                response = await self._handle(request, handler, scope, headers)
            except HubSpotError as exc:
                self.counts[f"error:{exc.category}"] += 1
                response = error_response(exc, headers)
            self.received.append(
                {
                    "at": datetime.now(UTC).isoformat(),
                    "method": request.method,
                    "path": request.url.path,
                    "query": request.url.query,
                    "status": response.status_code,
                }
            )
            return response

        return endpoint

    async def _handle(
        self, request: Request, handler: Endpoint, scope: str, headers: dict[str, str]
    ) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token.strip() != self.token:
            raise HubSpotError(
                401,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found. This API supports OAuth 2.0 "
                "authentication and you can find more details at "
                "https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            )
        kind, _rule = await self.faults.pick(request.method, request.url.path)
        self.window.append(time.monotonic())
        self.daily_used += 1
        headers.update(self._rate_headers())
        if kind == "429" or (
            self.rate_limit.enforced and len(self.window) > self.rate_limit.per_10s
        ):
            self.counts["rate_limited"] += 1
            return self._rate_limited(headers)
        if kind == "500":
            raise HubSpotError(500, "INTERNAL_ERROR", "internal error")
        needed = self._scope(request, scope)
        if needed and needed not in self.scopes:
            raise HubSpotError(
                403,
                "MISSING_SCOPES",
                "This app hasn't been granted all required scopes to make this call. "
                "Read more about required scopes here: https://developers.hubspot.com/scopes.",
                errors=[
                    {
                        "message": "One or more of the following scopes are required.",
                        "context": {"requiredGranularScopes": [needed]},
                    }
                ],
            )
        self.counts[f"{request.method} {scope}"] += 1
        response = await handler(request)
        response.headers.update(headers)
        return response

    @staticmethod
    def _scope(request: Request, scope: str) -> str | None:
        """``objects:read`` on a deals path is ``crm.objects.deals.read``."""
        area, _, access = scope.partition(":")
        name = request.path_params.get("object_type") or request.path_params.get("from_type")
        if not name:
            return None
        type_ = type_from_path(name)
        return f"crm.{area}.{type_.plural}.{access}"

    # --- objects ----------------------------------------------------------------------------

    def _type(self, request: Request, key: str = "object_type") -> ObjectType:
        return type_from_path(request.path_params[key])

    async def list_objects(self, request: Request) -> Response:
        type_ = self._type(request)
        try:
            limit = int(request.query_params.get("limit", "10"))
        except ValueError as exc:
            raise validation("limit must be a number") from exc
        objs, next_after = self.portal.list_page(type_, limit, request.query_params.get("after"))
        properties, associations = _csv(request, "properties"), _csv(request, "associations")
        body: dict[str, Any] = {
            "results": [self.portal.render(type_, o, properties, associations) for o in objs]
        }
        if next_after:
            body["paging"] = {
                "next": {"after": next_after, "link": f"{request.url.path}?after={next_after}"}
            }
        return JSONResponse(body)

    async def create_object(self, request: Request) -> Response:
        type_ = self._type(request)
        body = _object_body(await _json(request))
        obj = self.portal.create(type_, body)
        shown = list((body.get("properties") or {}).keys())
        return JSONResponse(self.portal.render(type_, obj, shown or None), status_code=201)

    async def get_object(self, request: Request) -> Response:
        type_ = self._type(request)
        obj = self.portal.get(
            type_, request.path_params["object_id"], request.query_params.get("idProperty")
        )
        return JSONResponse(
            self.portal.render(
                type_, obj, _csv(request, "properties"), _csv(request, "associations")
            )
        )

    async def update_object(self, request: Request) -> Response:
        type_ = self._type(request)
        body = _object_body(await _json(request))
        object_id = request.path_params["object_id"]
        id_property = request.query_params.get("idProperty")
        if id_property:
            object_id = self.portal.get(type_, object_id, id_property)["id"]
        values = body.get("properties")
        if not isinstance(values, dict):
            raise validation("Invalid input JSON: properties is required")
        obj = self.portal.update(type_, object_id, values)
        return JSONResponse(self.portal.render(type_, obj, list(values) or None))

    async def archive_object(self, request: Request) -> Response:
        self.portal.archive(self._type(request), request.path_params["object_id"])
        return Response(status_code=204)

    async def search(self, request: Request) -> Response:
        type_ = self._type(request)
        return JSONResponse(self.portal.search(type_, _object_body(await _json(request))))

    async def batch_read(self, request: Request) -> Response:
        type_ = self._type(request)
        started = now_iso()
        body = _object_body(await _json(request))
        inputs = _inputs(body)
        properties = body.get("properties") or None
        id_property = body.get("idProperty")
        results, missing = [], []
        for item in inputs:
            object_id = str((item or {}).get("id", ""))
            try:
                obj = self.portal.get(type_, object_id, id_property)
            except HubSpotError as exc:
                if exc.status != 404:
                    raise
                missing.append(object_id)
                continue
            results.append(self.portal.render(type_, obj, properties))
        errors = []
        if missing:
            errors.append(
                _batch_error(
                    "OBJECT_NOT_FOUND",
                    f"Could not get some {type_.singular.upper()} objects, they may be deleted or "
                    "not exist. Check that ids are valid.",
                    {"ids": missing},
                )
            )
        return _batch(results, errors, started)

    async def batch_create(self, request: Request) -> Response:
        type_ = self._type(request)
        started = now_iso()
        inputs = _inputs(await _json(request))
        created = [self.portal.create(type_, _object_body(item)) for item in inputs]
        response = _batch([self.portal.render(type_, o) for o in created], [], started)
        response.status_code = 201
        return response

    async def batch_update(self, request: Request) -> Response:
        type_ = self._type(request)
        started = now_iso()
        results, missing = [], []
        for item in _inputs(await _json(request)):
            item = _object_body(item)
            object_id = str(item.get("id", ""))
            try:
                obj = self.portal.update(type_, object_id, item.get("properties") or {})
            except HubSpotError as exc:
                if exc.status != 404:
                    raise
                missing.append(object_id)
                continue
            results.append(self.portal.render(type_, obj, list(item.get("properties") or {})))
        errors = []
        if missing:
            errors.append(
                _batch_error(
                    "OBJECT_NOT_FOUND",
                    f"Could not update some {type_.singular.upper()} objects, they may be deleted "
                    "or not exist.",
                    {"ids": missing},
                )
            )
        return _batch(results, errors, started)

    async def batch_archive(self, request: Request) -> Response:
        type_ = self._type(request)
        for item in _inputs(await _json(request)):
            self.portal.archive(type_, str((item or {}).get("id", "")))
        return Response(status_code=204)

    # --- properties and groups ---------------------------------------------------------------

    async def list_properties(self, request: Request) -> Response:
        type_ = self._type(request)
        archived = request.query_params.get("archived", "false").lower() == "true"
        found = [
            p for p in self.portal.properties(type_).values() if bool(p["archived"]) == archived
        ]
        wanted = _csv(request, "properties")
        if wanted:
            found = [p for p in found if p["name"] in wanted]
        return JSONResponse({"results": found})

    async def create_property(self, request: Request) -> Response:
        type_ = self._type(request)
        record = self.portal.create_property(type_, _object_body(await _json(request)))
        return JSONResponse(record, status_code=201)

    async def get_property(self, request: Request) -> Response:
        return JSONResponse(
            self.portal.property(self._type(request), request.path_params["property_name"])
        )

    async def update_property(self, request: Request) -> Response:
        record = self.portal.update_property(
            self._type(request),
            request.path_params["property_name"],
            _object_body(await _json(request)),
        )
        return JSONResponse(record)

    async def archive_property(self, request: Request) -> Response:
        self.portal.archive_property(self._type(request), request.path_params["property_name"])
        return Response(status_code=204)

    async def batch_read_properties(self, request: Request) -> Response:
        type_ = self._type(request)
        started = now_iso()
        results, missing = [], []
        for item in _inputs(await _json(request)):
            name = str((item or {}).get("name", ""))
            try:
                results.append(self.portal.property(type_, name))
            except HubSpotError:
                missing.append(name)
        errors = []
        if missing:
            errors.append(
                _batch_error(
                    "OBJECT_NOT_FOUND",
                    f"Unable to find properties on object type {type_.singular.upper()}",
                    {"properties": missing},
                )
            )
        return _batch(results, errors, started)

    async def batch_create_properties(self, request: Request) -> Response:
        type_ = self._type(request)
        started = now_iso()
        inputs = _inputs(await _json(request))
        created = [self.portal.create_property(type_, _object_body(i)) for i in inputs]
        response = _batch(created, [], started)
        response.status_code = 201
        return response

    async def list_groups(self, request: Request) -> Response:
        groups = self.portal.groups(self._type(request)).values()
        return JSONResponse({"results": [g for g in groups if not g["archived"]]})

    async def create_group(self, request: Request) -> Response:
        record = self.portal.create_group(self._type(request), _object_body(await _json(request)))
        return JSONResponse(record, status_code=201)

    async def get_group(self, request: Request) -> Response:
        return JSONResponse(
            self.portal.group(self._type(request), request.path_params["group_name"])
        )

    async def update_group(self, request: Request) -> Response:
        record = self.portal.group(self._type(request), request.path_params["group_name"])
        body = _object_body(await _json(request))
        for key in ("label", "displayOrder"):
            if key in body:
                record[key] = body[key]
        self.store.save()
        return JSONResponse(record)

    async def archive_group(self, request: Request) -> Response:
        self.portal.archive_group(self._type(request), request.path_params["group_name"])
        return Response(status_code=204)

    # --- associations v4 --------------------------------------------------------------------

    async def association_page(self, request: Request) -> Response:
        from_type = self._type(request)
        to_type = self._type(request, "to_type")
        try:
            limit = int(request.query_params.get("limit", "500"))
        except ValueError as exc:
            raise validation("limit must be a number") from exc
        return JSONResponse(
            self.portal.association_page(
                from_type,
                request.path_params["object_id"],
                to_type,
                request.query_params.get("after"),
                limit,
            )
        )

    async def associate(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.portal.disassociate(
                self._type(request),
                request.path_params["object_id"],
                self._type(request, "to_type"),
                request.path_params["to_id"],
            )
            return Response(status_code=204)
        result = self.portal.associate(
            self._type(request),
            request.path_params["object_id"],
            self._type(request, "to_type"),
            request.path_params["to_id"],
            await _json(request),
        )
        return JSONResponse(result, status_code=201)

    async def associate_default(self, request: Request) -> Response:
        started = now_iso()
        result = self.portal.associate_default(
            self._type(request),
            request.path_params["object_id"],
            self._type(request, "to_type"),
            request.path_params["to_id"],
        )
        return _batch([result], [], started)

    async def batch_read_associations(self, request: Request) -> Response:
        from_type = self._type(request, "from_type")
        to_type = self._type(request, "to_type")
        started = now_iso()
        results, errors = [], []
        for item in _inputs(await _json(request)):
            from_id = str((item or {}).get("id", ""))
            page = self.portal.association_page(
                from_type, from_id, to_type, (item or {}).get("after"), 500
            )
            if not page["results"]:
                errors.append(
                    {
                        **_batch_error(
                            "OBJECT_NOT_FOUND",
                            f"No {to_type.singular} is associated with {from_type.singular} "
                            f"{from_id}.",
                            {"fromObjectId": [from_id]},
                        ),
                        "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND",
                    }
                )
                continue
            entry: dict[str, Any] = {"from": {"id": from_id}, "to": page["results"]}
            if "paging" in page:
                entry["paging"] = page["paging"]
            results.append(entry)
        return _batch(results, errors, started)

    async def batch_create_associations(self, request: Request) -> Response:
        from_type = self._type(request, "from_type")
        to_type = self._type(request, "to_type")
        started = now_iso()
        results = []
        for item in _inputs(await _json(request)):
            item = _object_body(item)
            results.append(
                self.portal.associate(
                    from_type,
                    str((item.get("from") or {}).get("id", "")),
                    to_type,
                    str((item.get("to") or {}).get("id", "")),
                    item.get("types"),
                )
            )
        response = _batch(results, [], started)
        response.status_code = 201
        return response

    async def labels(self, request: Request) -> Response:
        from_type = self._type(request, "from_type")
        to_type = self._type(request, "to_type")
        if request.method == "POST":
            created = self.portal.create_label(
                from_type, to_type, _object_body(await _json(request))
            )
            return JSONResponse({"results": created})
        return JSONResponse({"results": self.portal.label_definitions(from_type, to_type)})

    async def delete_label(self, request: Request) -> Response:
        raw = request.path_params["type_id"]
        if not raw.isdigit():
            raise validation(f"associationTypeId must be a number, got {raw!r}")
        self.portal.delete_label(
            self._type(request, "from_type"), self._type(request, "to_type"), int(raw)
        )
        return Response(status_code=204)

    # --- sandbox controls --------------------------------------------------------------------

    async def control_faults(self, request: Request) -> Response:
        if request.method == "POST":
            self.faults.configure(FaultConfig.model_validate_json(await request.body() or b"{}"))
        return JSONResponse(
            {"config": self.faults.config.model_dump(), "injected": self.faults.injected}
        )

    async def control_rate_limit(self, request: Request) -> Response:
        if request.method == "POST":
            self.rate_limit = RateLimitConfig.model_validate_json(await request.body() or b"{}")
        return JSONResponse(self.rate_limit.model_dump())

    async def control_scopes(self, request: Request) -> Response:
        if request.method == "POST":
            update = ScopesUpdate.model_validate_json(await request.body() or b"{}")
            self.scopes = ALL_SCOPES if update.scopes is None else frozenset(update.scopes)
        return JSONResponse({"scopes": sorted(self.scopes)})

    async def control_webhooks(self, request: Request) -> Response:
        if request.method == "POST":
            update = WebhookUpdate.model_validate_json(await request.body() or b"{}")
            self.delivery.config = update.apply(self.delivery.config)
        return JSONResponse(self.delivery.config.model_dump(exclude={"client_secret"}))

    async def control_deliveries(self, request: Request) -> Response:
        return JSONResponse(
            {
                "events": [
                    {**r["event"], "state": r["state"], "attempts": r["attempts"]}
                    for r in self.delivery.events.values()
                ],
                "requests": self.delivery.requests,
            }
        )

    async def control_requests(self, request: Request) -> Response:
        contains = request.query_params.get("path_contains")
        return JSONResponse(
            {"requests": [r for r in self.received if not contains or contains in r["path"]]}
        )

    async def control_reset(self, request: Request) -> Response:
        await self.delivery.aclose()
        self.portal.reset()
        self.delivery.config = self.initial_webhooks
        self.faults.reset()
        self.rate_limit = RateLimitConfig()
        self.scopes = ALL_SCOPES
        self.window.clear()
        self.received.clear()
        self.counts.clear()
        return JSONResponse({"reset": True})

    async def control_stats(self, request: Request) -> Response:
        return JSONResponse(
            {
                "requests": len(self.received),
                "operations": dict(self.counts),
                "objects": self.portal.counts(),
                "webhooks": self.delivery.summary(),
                "faults_injected": self.faults.injected,
            }
        )

    async def control_health(self, request: Request) -> Response:
        return JSONResponse({"ok": True, "service": "hubspot"})

    def routes(self) -> list[Route]:
        objects = "/crm/v3/objects/{object_type}"
        props = "/crm/v3/properties/{object_type}"
        v4 = "/crm/v4/objects/{object_type}/{object_id}/associations"
        pair = "/crm/v4/associations/{from_type}/{to_type}"
        read, write = "objects:read", "objects:write"
        schema_read, schema_write = "schemas:read", "schemas:write"

        def r(path: str, handler: Endpoint, scope: str, *methods: str) -> Route:
            return Route(path, self.api(handler, scope), methods=list(methods))

        def control(path: str, handler: Endpoint, *methods: str) -> Route:
            async def guarded(request: Request) -> Response:
                try:
                    return await handler(request)
                except ValidationError as exc:
                    return JSONResponse({"error": exc.errors(include_url=False)}, status_code=400)

            return Route(path, guarded, methods=list(methods))

        return [
            r(objects, self.list_objects, read, "GET"),
            r(objects, self.create_object, write, "POST"),
            r(f"{objects}/search", self.search, read, "POST"),
            r(f"{objects}/batch/read", self.batch_read, read, "POST"),
            r(f"{objects}/batch/create", self.batch_create, write, "POST"),
            r(f"{objects}/batch/update", self.batch_update, write, "POST"),
            r(f"{objects}/batch/archive", self.batch_archive, write, "POST"),
            r(f"{objects}/{{object_id}}", self.get_object, read, "GET"),
            r(f"{objects}/{{object_id}}", self.update_object, write, "PATCH"),
            r(f"{objects}/{{object_id}}", self.archive_object, write, "DELETE"),
            r(props, self.list_properties, schema_read, "GET"),
            r(props, self.create_property, schema_write, "POST"),
            r(f"{props}/batch/read", self.batch_read_properties, schema_read, "POST"),
            r(f"{props}/batch/create", self.batch_create_properties, schema_write, "POST"),
            r(f"{props}/groups", self.list_groups, schema_read, "GET"),
            r(f"{props}/groups", self.create_group, schema_write, "POST"),
            r(f"{props}/groups/{{group_name}}", self.get_group, schema_read, "GET"),
            r(f"{props}/groups/{{group_name}}", self.update_group, schema_write, "PATCH"),
            r(f"{props}/groups/{{group_name}}", self.archive_group, schema_write, "DELETE"),
            r(f"{props}/{{property_name}}", self.get_property, schema_read, "GET"),
            r(f"{props}/{{property_name}}", self.update_property, schema_write, "PATCH"),
            r(f"{props}/{{property_name}}", self.archive_property, schema_write, "DELETE"),
            r(
                f"{v4}/default/{{to_type}}/{{to_id}}",
                self.associate_default,
                write,
                "PUT",
            ),
            r(f"{v4}/{{to_type}}", self.association_page, read, "GET"),
            r(f"{v4}/{{to_type}}/{{to_id}}", self.associate, write, "PUT", "DELETE"),
            r(f"{pair}/batch/read", self.batch_read_associations, read, "POST"),
            r(f"{pair}/batch/create", self.batch_create_associations, write, "POST"),
            r(f"{pair}/labels", self.labels, schema_read, "GET"),
            r(f"{pair}/labels", self.labels, schema_write, "POST"),
            r(f"{pair}/labels/{{type_id}}", self.delete_label, schema_write, "DELETE"),
            control("/_sandbox/faults", self.control_faults, "GET", "POST"),
            control("/_sandbox/rate-limit", self.control_rate_limit, "GET", "POST"),
            control("/_sandbox/scopes", self.control_scopes, "GET", "POST"),
            control("/_sandbox/webhooks", self.control_webhooks, "GET", "POST"),
            control("/_sandbox/deliveries", self.control_deliveries, "GET"),
            control("/_sandbox/requests", self.control_requests, "GET"),
            control("/_sandbox/reset", self.control_reset, "POST"),
            control("/_sandbox/stats", self.control_stats, "GET"),
            control("/_sandbox/health", self.control_health, "GET"),
        ]


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return error_response(HubSpotError(405, "METHOD_NOT_ALLOWED", "Method not allowed"))
    return error_response(HubSpotError(exc.status_code, "OBJECT_NOT_FOUND", "resource not found"))


def create_app(
    state_file: Path | None = None,
    webhook_url: str | None = None,
    *,
    client_secret: str = SANDBOX_CLIENT_SECRET,
    token: str = SANDBOX_TOKEN,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> Starlette:
    """Build the HubSpot emulator.

    Args:
        state_file: JSON file the portal (and pending webhook events) is written through to.
        webhook_url: the app's webhook target (the product's ``/webhooks/hubspot``); None sends
            nothing until ``POST /_sandbox/webhooks`` sets one.
        client_secret: the app's client secret, the key of the v3 signatures.
        token: the private-app access token every API call must carry.
        max_body_bytes: larger request bodies are refused with 413.
    """
    store = StateStore(state_file, Portal.initial_state)
    config = WebhookConfig(target_url=webhook_url, client_secret=client_secret)
    emulator = HubSpotEmulator(store, config, token)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        emulator.delivery.start()
        yield
        await emulator.delivery.aclose()

    def too_large() -> Response:
        return error_response(
            HubSpotError(413, "VALIDATION_ERROR", "The request body is too large")
        )

    app = Starlette(
        routes=emulator.routes(),
        middleware=[Middleware(BodyLimitMiddleware, limit=max_body_bytes, too_large=too_large)],
        exception_handlers={HTTPException: _http_error},
        lifespan=lifespan,
    )
    app.state.emulator = emulator
    return app
