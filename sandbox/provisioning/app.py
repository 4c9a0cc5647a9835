"""The product backend sink (Starlette): where a closed deal turns into a provisioned tenant.

``POST /v1/provision`` takes ``{"tenant_id", "deal_id", "account_name", "skus": [{"sku",
"quantity", "features": {name: bool | int | str}}]}`` and answers 201 ``{"tenant_id", "deal_id",
"features": {sku: {...}}, "provisioned_at"}``. In order, a request must:

1. carry a valid ``X-Qtc-Signature`` (scheme in ``signing``), else 401;
2. carry an ``Idempotency-Key`` header, else 400;
3. be a JSON body of the shape above, else 400 (not JSON) or 422 (wrong shape).

A key seen before with the same body (compared as canonical JSON) returns the stored response
again with ``Idempotent-Replayed: true``; with a different body it is a 409. Nothing is provisioned
twice. A tenant provisioned by several deals keeps the union of their SKUs (a SKU sent again
replaces its features) and a flat ``entitlements`` view: a flag is on when any SKU turns it on,
numeric limits add up across SKUs, text values come from the last SKU in code order.

Also ``GET /v1/tenants``, ``GET /v1/tenants/{id}``, and the sandbox controls ``/_sandbox/reset``,
``/_sandbox/stats`` (calls received, distinct keys, duplicates...), ``/_sandbox/faults``. Errors are
``application/problem+json``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runtime.asgi import MAX_BODY_BYTES, BodyLimitMiddleware
from runtime.signing import SIGNATURE_HEADER, SignatureError, verify
from sandbox.common import FaultConfig, Faults, StateStore, read_json_model

SANDBOX_PROVISIONING_SECRET = "sandbox-provisioning-secret"
IDEMPOTENCY_HEADER = "Idempotency-Key"
PROBLEM_BASE = "https://qtc.example/problems/provisioning/"

NonEmpty = Annotated[str, Field(min_length=1, max_length=255)]
FeatureValue = StrictBool | StrictInt | StrictStr


class SkuRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: NonEmpty
    quantity: StrictInt = Field(ge=1)
    features: dict[str, FeatureValue] = Field(default_factory=dict)


class ProvisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant_id: NonEmpty
    deal_id: NonEmpty
    account_name: NonEmpty
    skus: list[SkuRequest] = Field(min_length=1, max_length=200)


def problem(status: int, slug: str, title: str, detail: str, **extra: Any) -> Response:
    body = {"type": PROBLEM_BASE + slug, "title": title, "status": status, "detail": detail}
    return JSONResponse(
        {**body, **extra}, status_code=status, media_type="application/problem+json"
    )


def _too_large() -> Response:
    return problem(413, "too-large", "Request body too large", "The request body is too large.")


def _initial() -> dict[str, Any]:
    return {
        "tenants": {},
        "requests": {},
        "stats": {
            "received": 0,
            "provisioned": 0,
            "duplicates": 0,
            "conflicts": 0,
            "rejected_signature": 0,
            "rejected_request": 0,
        },
    }


def _entitlements(features: dict[str, dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for sku in sorted(features):
        for name, value in features[sku].items():
            current = merged.get(name)
            if isinstance(value, bool):
                merged[name] = value or current is True
            elif (
                isinstance(value, int)
                and isinstance(current, int)
                and not isinstance(current, bool)
            ):
                merged[name] = current + value
            else:
                merged[name] = value
    return merged


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def create_app(
    state_file: Path | None = None,
    secret: str = SANDBOX_PROVISIONING_SECRET,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> Starlette:
    """Build the sink. ``state_file``: write-through JSON state, so a restart loses nothing."""
    store = StateStore(state_file, _initial)
    faults = Faults()

    def count(name: str) -> None:
        """Count one outcome and persist it along with whatever else changed under the lock."""
        with store.lock:
            store.data["stats"][name] += 1
            store.save()

    def with_faults(handler: Callable[[Request], Awaitable[Response]]) -> Any:
        async def endpoint(request: Request) -> Response:
            kind, rule = await faults.pick(request.method, request.url.path)
            if kind == "429":
                retry_after = str(rule.retry_after_s if rule else 1)
                response = problem(
                    429, "rate-limited", "Too many requests", "Slow down and retry later."
                )
                response.headers["Retry-After"] = retry_after
                return response
            if kind == "500":
                return problem(500, "internal", "Internal error", "Injected sandbox fault.")
            return await handler(request)

        return endpoint

    async def provision(request: Request) -> Response:
        raw = await request.body()
        count("received")
        try:
            verify(secret, raw, request.headers.get(SIGNATURE_HEADER))
        except SignatureError as exc:
            count("rejected_signature")
            return problem(401, "bad-signature", "Signature verification failed", str(exc))
        key = request.headers.get(IDEMPOTENCY_HEADER, "").strip()
        if not key:
            count("rejected_request")
            return problem(
                400,
                "idempotency-key-required",
                "Idempotency-Key required",
                f"Send an {IDEMPOTENCY_HEADER} header so a retried call is not provisioned twice.",
            )
        try:
            parsed = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            count("rejected_request")
            return problem(400, "invalid-json", "Invalid JSON", "The body is not valid JSON.")
        fingerprint = hashlib.sha256(
            json.dumps(parsed, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()

        with store.lock:
            seen = store.data["requests"].get(key)
            if seen is not None:
                if seen["fingerprint"] != fingerprint:
                    count("conflicts")
                    return problem(
                        409,
                        "idempotency-key-reused",
                        "Idempotency-Key reused with a different body",
                        f"Key {key!r} was first used for a different request; nothing was changed.",
                    )
                count("duplicates")
                return JSONResponse(
                    seen["body"],
                    status_code=seen["status"],
                    headers={"Idempotent-Replayed": "true"},
                )

        try:
            body = ProvisionRequest.model_validate(parsed)
        except ValidationError as exc:
            count("rejected_request")
            return problem(
                422,
                "invalid-request",
                "Invalid provisioning request",
                "The body does not match the provisioning schema.",
                errors=[
                    {"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors(include_url=False)
                ],
            )

        with store.lock:
            now = _now()
            features = {line.sku: dict(line.features) for line in body.skus}
            tenant = store.data["tenants"].get(body.tenant_id) or {
                "tenant_id": body.tenant_id,
                "created_at": now,
                "deals": [],
                "features": {},
                "quantities": {},
            }
            tenant["account_name"] = body.account_name
            tenant["updated_at"] = now
            if body.deal_id not in tenant["deals"]:
                tenant["deals"].append(body.deal_id)
            tenant["features"].update(features)
            tenant["quantities"].update({line.sku: line.quantity for line in body.skus})
            tenant["entitlements"] = _entitlements(tenant["features"])
            store.data["tenants"][body.tenant_id] = tenant
            response = {
                "tenant_id": body.tenant_id,
                "deal_id": body.deal_id,
                "features": features,
                "provisioned_at": now,
            }
            store.data["requests"][key] = {
                "fingerprint": fingerprint,
                "status": 201,
                "body": response,
            }
            count("provisioned")
        return JSONResponse(response, status_code=201)

    async def list_tenants(request: Request) -> Response:
        tenants = store.data["tenants"]
        return JSONResponse({"data": [tenants[t] for t in sorted(tenants)]})

    async def get_tenant(request: Request) -> Response:
        tenant_id = request.path_params["tenant_id"]
        tenant = store.data["tenants"].get(tenant_id)
        if tenant is None:
            return problem(404, "not-found", "Tenant not found", f"No tenant {tenant_id!r}.")
        return JSONResponse(tenant)

    async def set_faults(request: Request) -> Response:
        try:
            config = await read_json_model(request, FaultConfig)
        except ValidationError as exc:
            return problem(
                400,
                "invalid-faults",
                "Invalid fault configuration",
                str(exc.error_count()) + " error(s)",
                errors=exc.errors(include_url=False),
            )
        faults.configure(config)
        return JSONResponse(config.model_dump())

    async def get_faults(request: Request) -> Response:
        return JSONResponse(faults.config.model_dump())

    async def reset(request: Request) -> Response:
        store.reset()
        faults.reset()
        return JSONResponse({"reset": True})

    async def stats(request: Request) -> Response:
        numbers = store.data["stats"]
        return JSONResponse(
            {
                "provision_calls": numbers["received"],
                "distinct_keys": len(store.data["requests"]),
                "provisioned": numbers["provisioned"],
                "duplicates": numbers["duplicates"],
                "conflicts": numbers["conflicts"],
                "rejected_signature": numbers["rejected_signature"],
                "rejected_request": numbers["rejected_request"],
                "tenants": len(store.data["tenants"]),
                "faults_injected": faults.injected,
            }
        )

    return Starlette(
        routes=[
            Route("/v1/provision", with_faults(provision), methods=["POST"]),
            Route("/v1/tenants", with_faults(list_tenants), methods=["GET"]),
            Route("/v1/tenants/{tenant_id}", with_faults(get_tenant), methods=["GET"]),
            Route("/_sandbox/faults", set_faults, methods=["POST"]),
            Route("/_sandbox/faults", get_faults, methods=["GET"]),
            Route("/_sandbox/reset", reset, methods=["POST"]),
            Route("/_sandbox/stats", stats, methods=["GET"]),
        ],
        middleware=[Middleware(BodyLimitMiddleware, limit=max_body_bytes, too_large=_too_large)],
    )
