"""The Ironclad emulator's HTTP surface: the public REST API v1, OAuth client credentials, sandbox
controls.

Errors answer as Ironclad does: ``{"code", "message", "param"}`` with 400 (``MISSING_PARAM``,
``INVALID_PARAM``, ``INVALID_STATE``), ``{"code": "UNAUTHORIZED"}`` with 401, ``FORBIDDEN`` with
403 (a token without the route's scope), ``NOT_FOUND`` with 404 and ``TOO_MANY_REQUESTS`` with 429.

Authentication takes either form Ironclad offers: the legacy bearer API key (a launch must then
name its ``creator``, a user of the account), or an access token from ``POST /oauth/token`` with
the client-credentials grant, which acts as the user named by ``x-as-user-email`` /
``x-as-user-id`` and is limited to its scopes.

``POST /_sandbox/workflows/{id}/sign`` plays the counterparty signer: the workflow completes, the
signed document is recorded with its time, and ``workflow_signature_packet_fully_signed`` and
``workflow_completed`` are delivered, RSA-signed, to every subscribed webhook.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from runtime.asgi import MAX_BODY_BYTES, BodyLimitMiddleware
from sandbox.common import FaultConfig, Faults, StateStore
from sandbox.ironclad.templates import (
    LaunchError,
    check_attributes,
    sandbox_templates,
)
from sandbox.ironclad.webhooks import (
    DeliveryPolicy,
    WebhookDelivery,
    iso,
    new_private_key_pem,
    public_key_pem,
)

SANDBOX_API_KEY = "sandbox-ironclad-key"
SANDBOX_CLIENT_ID = "sandbox-ironclad-client"
SANDBOX_CLIENT_SECRET = "sandbox-ironclad-client-secret"
SANDBOX_USER_EMAIL = "qtc-bot@sandbox.example"
SANDBOX_USER_ID = "5f0375c4cdc1927a3c5edcd3"
COMPANY_ID = "605b9829cdd37d296123f4b4"
TOKEN_LIFETIME_S = 3600
API = "/public/api/v1"
DEFAULT_EVENTS = [
    "workflow_launched",
    "workflow_cancelled",
    "workflow_completed",
    "workflow_signature_packet_fully_signed",
]
# The scopes of every route; a client-credentials token without it gets 403.
SCOPE_CREATE = "public.workflows.createWorkflows"
SCOPE_READ = "public.workflows.readWorkflows"
SCOPE_SIGNATURES = "public.workflows.readSignatures"
SCOPE_CANCEL = "public.workflows.cancel"
SCOPE_SCHEMAS = "public.workflows.readSchemas"
SCOPE_WEBHOOKS_READ = "public.webhooks.readWebhooks"
SCOPE_WEBHOOKS_CREATE = "public.webhooks.createWebhooks"
SCOPE_WEBHOOKS_DELETE = "public.webhooks.deleteWebhooks"
_FILTER_EQUALS = re.compile(r"^Equals\(\s*\[([A-Za-z0-9_]+)\]\s*,\s*'((?:[^'\\]|\\.)*)'\s*\)$")

Endpoint = Callable[[Request], Awaitable[Response]]


class IroncladError(Exception):
    def __init__(self, status: int, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.param is not None:
            body["param"] = self.param
        return JSONResponse(body, status_code=self.status)


def _not_found(param: str = "workflowId") -> IroncladError:
    return IroncladError(404, "NOT_FOUND", "workflow does not exist", param)


class SignRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    signed_at: datetime | None = None


class WebhookSettings(BaseModel):
    """Body of ``POST /_sandbox/webhooks``: the delivery policy; the fields given change."""

    model_config = ConfigDict(extra="forbid")

    max_attempts: int | None = Field(None, ge=1, le=1000)
    initial_backoff_s: float | None = Field(None, ge=0, le=60)
    max_backoff_s: float | None = Field(None, ge=0, le=600)
    timeout_s: float | None = Field(None, gt=0, le=120)
    deliver_twice: bool | None = None


def _initial_state(signing_key: str) -> dict[str, Any]:
    return {
        "workflows": {},
        "webhooks": {},
        "deliveries": {},
        "tokens": {},
        "launches": [],
        "cancellations": [],
        "sequence": 0,
        "signingKey": signing_key,
    }


def _loads(body: bytes) -> Any:
    try:
        return json.loads(body or b"null", parse_float=Decimal)
    except ValueError as exc:
        raise IroncladError(
            400, "INVALID_PARAM", f"request body is not JSON: {exc}", "body"
        ) from exc


def _plain(value: Any) -> Any:
    """Exact decimals from a request, made storable: integral ones as int, others as float."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class IroncladEmulator:
    def __init__(
        self,
        store: StateStore,
        policy: DeliveryPolicy,
        *,
        api_key: str,
        webhook_url: str | None,
    ) -> None:
        self.store = store
        self.api_key = api_key
        self.initial_policy = policy
        self.webhook_url = webhook_url
        self.faults = Faults()
        self.delivery = WebhookDelivery(store, policy, COMPANY_ID)
        self.templates = sandbox_templates()
        self.users = {SANDBOX_USER_EMAIL: SANDBOX_USER_ID}
        self.requests: Counter[str] = Counter()
        self.subscribe_default_webhook()

    def subscribe_default_webhook(self) -> None:
        if self.webhook_url and not self.store.data["webhooks"]:
            self._add_webhook(self.webhook_url, list(DEFAULT_EVENTS))
            self.store.save()

    @property
    def workflows(self) -> dict[str, dict[str, Any]]:
        workflows: dict[str, dict[str, Any]] = self.store.data["workflows"]
        return workflows

    # --- plumbing ---------------------------------------------------------------------------

    def api(self, handler: Endpoint, scope: str | None, *, auth: bool = True) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            self.requests[handler.__name__] += 1
            fault, rule = await self.faults.pick(request.method, request.url.path)
            if fault == "429" and rule is not None:
                return JSONResponse(
                    {"code": "TOO_MANY_REQUESTS", "message": "rate limit exceeded (injected)"},
                    status_code=429,
                    headers={"Retry-After": str(rule.retry_after_s)},
                )
            if fault == "500":
                return JSONResponse(
                    {"code": "SERVER_ERROR", "message": "an unexpected error occurred (injected)"},
                    status_code=500,
                )
            try:
                if auth:
                    request.state.actor = self._authenticate(request, scope)
                return await handler(request)
            except IroncladError as exc:
                return exc.response()

        return endpoint

    def control(self, handler: Endpoint) -> Endpoint:
        """Sandbox controls: no auth and no faults (a fault must not block switching it off)."""

        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except IroncladError as exc:
                return exc.response()
            except ValidationError as exc:
                return JSONResponse(
                    {"code": "INVALID_PARAM", "message": str(exc.errors()[0]["msg"])}, 400
                )

        return endpoint

    def _authenticate(self, request: Request, scope: str | None) -> dict[str, Any]:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise IroncladError(401, "UNAUTHORIZED", "invalid authentication token")
        if token == self.api_key:
            return {"kind": "api_key"}
        issued = self.store.data["tokens"].get(token)
        if issued is None:
            raise IroncladError(401, "UNAUTHORIZED", "invalid authentication token")
        if issued["expiresAt"] <= time.time():
            raise IroncladError(401, "UNAUTHORIZED", "token has expired")
        if scope is not None and scope not in issued["scopes"]:
            raise IroncladError(403, "FORBIDDEN", "access forbidden")
        email = request.headers.get("x-as-user-email")
        user_id = request.headers.get("x-as-user-id")
        if email is None and user_id is None:
            raise IroncladError(
                400,
                "MISSING_PARAM",
                "x-as-user-email or x-as-user-id is required with a client credentials token",
                "x-as-user-email",
            )
        if (email is not None and email not in self.users) or (
            user_id is not None and user_id not in self.users.values()
        ):
            raise IroncladError(400, "INVALID_PARAM", "user is not in this account", "x-as-user")
        return {"kind": "oauth", "email": email or SANDBOX_USER_EMAIL}

    def _workflow(self, request: Request) -> dict[str, Any]:
        key = request.path_params["workflow_id"]
        workflow = self.workflows.get(key)
        if workflow is None:
            workflow = next((w for w in self.workflows.values() if w["ironcladId"] == key), None)
        if workflow is None:
            raise _not_found()
        return workflow

    def _add_webhook(self, url: str, events: list[str]) -> dict[str, Any]:
        webhook = {
            "id": uuid.uuid4().hex[:24],
            "events": events,
            "targetURL": url,
            "companyId": COMPANY_ID,
            "status": "enabled",
            "consecutiveFailureCount": 0,
        }
        self.store.data["webhooks"][webhook["id"]] = webhook
        return webhook

    # --- OAuth ------------------------------------------------------------------------------

    async def oauth_token(self, request: Request) -> Response:
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode("latin-1")).items()}
        if form.get("grant_type") != "client_credentials":
            return JSONResponse(
                {"error": "unsupported_grant_type", "error_description": "unsupported grant"}, 400
            )
        if (
            form.get("client_id") != SANDBOX_CLIENT_ID
            or form.get("client_secret") != SANDBOX_CLIENT_SECRET
        ):
            return JSONResponse(
                {"error": "invalid_client", "error_description": "invalid client"}, 401
            )
        scopes = [s for s in form.get("scope", "").split() if s]
        token = f"sbx-ic-{secrets.token_urlsafe(24)}"
        self.store.data["tokens"][token] = {
            "scopes": scopes,
            "expiresAt": time.time() + TOKEN_LIFETIME_S,
        }
        self.store.save()
        return JSONResponse(
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": TOKEN_LIFETIME_S,
                "scope": " ".join(scopes),
            }
        )

    # --- workflows --------------------------------------------------------------------------

    async def launch(self, request: Request) -> Response:
        body = _loads(await request.body())
        if not isinstance(body, dict):
            raise IroncladError(400, "INVALID_PARAM", "request body must be an object", "body")
        for key in body:
            if key not in {"template", "attributes", "creator"}:
                raise IroncladError(400, "INVALID_PARAM", "unknown parameter", key)
        template_id = body.get("template")
        if not template_id:
            raise IroncladError(400, "MISSING_PARAM", "missing required parameter", "template")
        template = self.templates.get(str(template_id))
        if template is None:
            raise IroncladError(400, "INVALID_PARAM", "template does not exist", "template")
        attributes = body.get("attributes")
        if not isinstance(attributes, dict):
            raise IroncladError(400, "MISSING_PARAM", "missing required parameter", "attributes")
        creator_email = self._creator(request, body.get("creator"))
        try:
            check_attributes(template["schema"], attributes)
        except LaunchError as exc:
            raise IroncladError(400, exc.code, exc.message, exc.param) from exc
        now = datetime.now(UTC)
        self.store.data["sequence"] += 1
        stored = _plain(attributes)
        signer_name = stored[template["signerNameAttribute"]]
        signer_email = stored[template["signerEmailAttribute"]]
        workflow = {
            "id": uuid.uuid4().hex[:24],
            "ironcladId": f"IC-{self.store.data['sequence']}",
            "title": f"{template['name']} with {stored[template['titleAttribute']]}",
            "template": template["id"],
            "step": "Sign",
            "attributes": stored,
            "status": "active",
            "creator": {
                "id": self.users[creator_email],
                "displayName": "QTC Sandbox",
                "email": creator_email,
                "title": "Integration user",
                "username": creator_email,
                "metadata": {},
            },
            "created": iso(now),
            "lastUpdated": iso(now),
            "signers": [
                {
                    "name": signer_name,
                    "email": signer_email,
                    "roleName": template["signerRole"],
                    "signatureStatus": {"status": "sent"},
                    "delegates": [],
                }
            ],
            "recordIds": [],
        }
        self.workflows[workflow["id"]] = workflow
        self.store.data["launches"].append(
            {"workflowId": workflow["id"], "at": iso(now), "request": _plain(body)}
        )
        self.store.save()
        self.delivery.publish("workflow_launched", workflow, now)
        return JSONResponse(self.view(workflow))

    def _creator(self, request: Request, creator: Any) -> str:
        actor = request.state.actor
        if actor["kind"] == "oauth":
            # Ignored with an OAuth token: the acting user is the x-as-user header's.
            return str(actor["email"])
        if creator is None:
            raise IroncladError(400, "MISSING_PARAM", "missing required parameter", "creator")
        if not isinstance(creator, dict):
            raise IroncladError(400, "INVALID_PARAM", "creator must be an object", "creator")
        kind = creator.get("type", "email")
        if kind == "email" and creator.get("email") in self.users:
            return str(creator["email"])
        if kind == "id":
            for email, user_id in self.users.items():
                if creator.get("id") == user_id:
                    return email
        raise IroncladError(
            400, "INVALID_PARAM", "creator is not a user in this account", "creator"
        )

    def view(self, workflow: dict[str, Any]) -> dict[str, Any]:
        """The workflow as Retrieve a Workflow answers it."""
        template = self.templates[workflow["template"]]
        status = workflow["status"]
        signatures: dict[str, Any]
        if status == "completed":
            signatures = {"state": "completed"}
        elif status == "cancelled":
            signatures = {"state": "not_applicable", "message": "This workflow has been cancelled"}
        else:
            signatures = {
                "state": "in_progress",
                "url": f"{API}/workflows/{workflow['id']}/signatures",
            }
        return {
            "id": workflow["id"],
            "ironcladId": workflow["ironcladId"],
            "title": workflow["title"],
            "template": workflow["template"],
            "step": workflow["step"],
            "schema": {
                key: {"type": f["type"], "displayName": f["displayName"], "propertyKey": key}
                for key, f in template["schema"].items()
            },
            "attributes": workflow["attributes"],
            "isCancelled": status == "cancelled",
            "isComplete": status == "completed",
            "status": status,
            "creator": workflow["creator"],
            "created": workflow["created"],
            "lastUpdated": workflow["lastUpdated"],
            "roles": [
                {
                    "id": "counterpartySigner",
                    "displayName": template["signerRole"],
                    "assignees": [],
                }
            ],
            "approvals": {"state": "not_applicable", "message": "This workflow has no approvals"},
            "signatures": signatures,
            "recordIds": workflow["recordIds"],
            "isRevertibleToReview": False,
        }

    async def get_workflow(self, request: Request) -> Response:
        return JSONResponse(self.view(self._workflow(request)))

    async def list_workflows(self, request: Request) -> Response:
        query = request.query_params
        try:
            page = int(query.get("page", "0"))
            page_size = int(query.get("pageSize", "20"))
        except ValueError as exc:
            raise IroncladError(
                400, "INVALID_PARAM", "page and pageSize are integers", "page"
            ) from exc
        if page < 0:
            raise IroncladError(400, "INVALID_PARAM", "page must be 0 or more", "page")
        if not 1 <= page_size <= 100:
            raise IroncladError(400, "INVALID_PARAM", "pageSize must be 1 to 100", "pageSize")
        statuses = {s for s in query.get("status", "active").split(",") if s}
        unknown = statuses - {"active", "paused", "completed", "cancelled"}
        if unknown:
            raise IroncladError(400, "INVALID_PARAM", f"unknown status {sorted(unknown)}", "status")
        template = query.get("template")
        wanted = _parse_filter(query.get("filter"))
        matching = [
            w
            for w in self.workflows.values()
            if w["status"] in statuses
            and (template is None or w["template"] == template)
            and all(str(w["attributes"].get(k, "")) == v for k, v in wanted)
        ]
        matching.sort(key=lambda w: w["created"], reverse=True)
        chunk = matching[page * page_size : (page + 1) * page_size]
        return JSONResponse(
            {
                "page": page,
                "pageSize": page_size,
                "count": len(matching),
                "list": [self.view(w) for w in chunk],
            }
        )

    async def signatures(self, request: Request) -> Response:
        workflow = self._workflow(request)
        if workflow["step"] not in {"Sign", "Archive", "Complete"}:
            raise IroncladError(
                400,
                "INVALID_STATE",
                f"This workflow is not at the Sign step, and is currently at the "
                f"{workflow['step']} step",
            )
        return JSONResponse(
            {
                "workflowId": workflow["id"],
                "title": workflow["title"],
                "signers": workflow["signers"],
            }
        )

    async def cancel(self, request: Request) -> Response:
        workflow = self._workflow(request)
        body = _loads(await request.body())
        comment = body.get("comment") if isinstance(body, dict) else None
        if not isinstance(comment, dict) or not isinstance(comment.get("message"), str):
            raise IroncladError(400, "MISSING_PARAM", "missing required parameter", "comment")
        if workflow["status"] in {"completed", "cancelled"}:
            raise IroncladError(
                400,
                "INVALID_STATE",
                f"workflow cannot be cancelled: it is {workflow['status']}",
                "workflowId",
            )
        now = datetime.now(UTC)
        workflow["status"] = "cancelled"
        workflow["lastUpdated"] = iso(now)
        self.store.data["cancellations"].append(
            {"workflowId": workflow["id"], "at": iso(now), "comment": comment["message"]}
        )
        self.store.save()
        self.delivery.publish("workflow_cancelled", workflow, now)
        return Response(status_code=204)

    async def list_schemas(self, request: Request) -> Response:
        templates = [
            {"id": t["id"], "name": t["name"], "schema": t["schema"]}
            for t in self.templates.values()
        ]
        return JSONResponse(
            {"page": 0, "pageSize": len(templates), "count": len(templates), "list": templates}
        )

    async def get_schema(self, request: Request) -> Response:
        template = self.templates.get(request.path_params["template_id"])
        if template is None:
            raise IroncladError(404, "NOT_FOUND", "template does not exist", "id")
        return JSONResponse(
            {"id": template["id"], "name": template["name"], "schema": template["schema"]}
        )

    # --- webhooks ---------------------------------------------------------------------------

    async def verification_key(self, request: Request) -> Response:
        return PlainTextResponse(public_key_pem(self.store.data["signingKey"]))

    async def create_webhook(self, request: Request) -> Response:
        body = _loads(await request.body())
        if not isinstance(body, dict) or not body.get("events"):
            raise IroncladError(400, "MISSING_PARAM", "missing required parameter", "events")
        url = body.get("targetURL")
        if not isinstance(url, str) or not url:
            raise IroncladError(400, "MISSING_PARAM", "missing required parameter", "targetURL")
        if any(w["targetURL"] == url for w in self.store.data["webhooks"].values()):
            raise IroncladError(400, "INVALID_PARAM", "target URL already exists", "targetURL")
        webhook = self._add_webhook(url, [str(e) for e in body["events"]])
        self.store.save()
        return JSONResponse(webhook, status_code=201)

    async def list_webhooks(self, request: Request) -> Response:
        hooks = list(self.store.data["webhooks"].values())
        return JSONResponse({"page": 0, "pageSize": max(len(hooks), 1), "list": hooks})

    async def delete_webhook(self, request: Request) -> Response:
        if self.store.data["webhooks"].pop(request.path_params["webhook_id"], None) is None:
            raise IroncladError(404, "NOT_FOUND", "webhook does not exist", "id")
        self.store.save()
        return Response(status_code=204)

    # --- sandbox controls -------------------------------------------------------------------

    async def sign(self, request: Request) -> Response:
        ask = SignRequest.model_validate_json(await request.body() or b"{}")
        workflow = self._workflow(request)
        if workflow["status"] != "active" or workflow["step"] != "Sign":
            raise IroncladError(
                400,
                "INVALID_STATE",
                f"workflow {workflow['id']} is {workflow['status']} at {workflow['step']}; only "
                "an active workflow at the Sign step can be signed",
                "workflowId",
            )
        signed_at = ask.signed_at or datetime.now(UTC)
        if signed_at.tzinfo is None:
            signed_at = signed_at.replace(tzinfo=UTC)
        for signer in workflow["signers"]:
            signer["signatureStatus"] = {"status": "signed"}
        key = uuid.uuid4().hex[:8]
        workflow["attributes"]["signed"] = [
            {
                "version": uuid.uuid4().hex[:9],
                "versionNumber": 1,
                "filename": f"{workflow['title']} (signed).pdf",
                "key": key,
                "download": f"{API}/workflows/{workflow['id']}/document/{key}/download",
                "lastModified": {"timestamp": iso(signed_at)},
            }
        ]
        workflow["status"] = "completed"
        workflow["step"] = "Complete"
        workflow["recordIds"] = [str(uuid.uuid4())]
        now = datetime.now(UTC)
        workflow["lastUpdated"] = iso(now)
        self.store.save()
        deliveries = self.delivery.publish("workflow_signature_packet_fully_signed", workflow, now)
        deliveries += self.delivery.publish("workflow_completed", workflow, now)
        return JSONResponse(
            {
                "workflowId": workflow["id"],
                "status": workflow["status"],
                "signedAt": iso(signed_at),
                "deliveries": [
                    {"id": i, "url": self.store.data["deliveries"][i]["url"]} for i in deliveries
                ],
            }
        )

    async def sandbox_workflows(self, request: Request) -> Response:
        return JSONResponse(
            {
                "workflows": [self.view(w) for w in self.workflows.values()],
                "launches": self.store.data["launches"],
                "cancellations": self.store.data["cancellations"],
            }
        )

    async def deliveries(self, request: Request) -> Response:
        workflow_id = request.query_params.get("workflow_id")
        records = [
            r
            for r in self.store.data["deliveries"].values()
            if workflow_id is None or r["workflowId"] == workflow_id
        ]
        return JSONResponse({"deliveries": records})

    async def webhook_settings(self, request: Request) -> Response:
        if request.method == "POST":
            update = WebhookSettings.model_validate_json(await request.body() or b"{}")
            changes = {k: getattr(update, k) for k in update.model_fields_set}
            self.delivery.policy = DeliveryPolicy.model_validate(
                {**self.delivery.policy.model_dump(), **changes}
            )
        return JSONResponse(
            {
                "policy": self.delivery.policy.model_dump(),
                "webhooks": list(self.store.data["webhooks"].values()),
            }
        )

    async def rotate_key(self, request: Request) -> Response:
        self.store.data["signingKey"] = new_private_key_pem()
        self.store.save()
        return PlainTextResponse(public_key_pem(self.store.data["signingKey"]))

    async def faults_endpoint(self, request: Request) -> Response:
        if request.method == "POST":
            self.faults.configure(FaultConfig.model_validate_json(await request.body() or b"{}"))
        return JSONResponse(
            {"config": self.faults.config.model_dump(), "injected": self.faults.injected}
        )

    async def reset(self, request: Request) -> Response:
        await self.delivery.cancel_all()
        self.store.reset()
        self.faults.reset()
        self.delivery.policy = self.initial_policy
        self.requests.clear()
        self.subscribe_default_webhook()
        return JSONResponse({"reset": True})

    async def stats(self, request: Request) -> Response:
        return JSONResponse(
            {
                "workflows": len(self.workflows),
                "workflows_by_status": dict(Counter(w["status"] for w in self.workflows.values())),
                "deliveries": self.delivery.summary(),
                "requests": dict(self.requests),
                "faults_injected": self.faults.injected,
            }
        )

    async def health(self, request: Request) -> Response:
        return JSONResponse({"ok": True, "service": "ironclad"})

    def routes(self) -> list[Route]:
        api, control = self.api, self.control
        wf = f"{API}/workflows/{{workflow_id}}"
        return [
            Route("/oauth/token", api(self.oauth_token, None, auth=False), methods=["POST"]),
            Route(f"{API}/workflows", api(self.launch, SCOPE_CREATE), methods=["POST"]),
            Route(f"{API}/workflows", api(self.list_workflows, SCOPE_READ), methods=["GET"]),
            Route(wf, api(self.get_workflow, SCOPE_READ), methods=["GET"]),
            Route(f"{wf}/signatures", api(self.signatures, SCOPE_SIGNATURES), methods=["GET"]),
            Route(f"{wf}/cancel", api(self.cancel, SCOPE_CANCEL), methods=["POST"]),
            Route(
                f"{API}/workflow-schemas", api(self.list_schemas, SCOPE_SCHEMAS), methods=["GET"]
            ),
            Route(
                f"{API}/workflow-schemas/{{template_id}}",
                api(self.get_schema, SCOPE_SCHEMAS),
                methods=["GET"],
            ),
            Route(
                f"{API}/webhooks/verification-key",
                api(self.verification_key, None),
                methods=["GET"],
            ),
            Route(
                f"{API}/webhooks", api(self.create_webhook, SCOPE_WEBHOOKS_CREATE), methods=["POST"]
            ),
            Route(f"{API}/webhooks", api(self.list_webhooks, SCOPE_WEBHOOKS_READ), methods=["GET"]),
            Route(
                f"{API}/webhooks/{{webhook_id}}",
                api(self.delete_webhook, SCOPE_WEBHOOKS_DELETE),
                methods=["DELETE"],
            ),
            Route("/_sandbox/workflows/{workflow_id}/sign", control(self.sign), methods=["POST"]),
            Route("/_sandbox/workflows", control(self.sandbox_workflows), methods=["GET"]),
            Route("/_sandbox/deliveries", control(self.deliveries), methods=["GET"]),
            Route("/_sandbox/webhooks", control(self.webhook_settings), methods=["GET", "POST"]),
            Route("/_sandbox/verification-key/rotate", control(self.rotate_key), methods=["POST"]),
            Route("/_sandbox/faults", control(self.faults_endpoint), methods=["GET", "POST"]),
            Route("/_sandbox/reset", control(self.reset), methods=["POST"]),
            Route("/_sandbox/stats", control(self.stats), methods=["GET"]),
            Route("/_sandbox/health", control(self.health), methods=["GET"]),
        ]


def _parse_filter(formula: str | None) -> list[tuple[str, str]]:
    """``Equals([attr], 'value')``, alone or several inside ``And(...)``, as (attr, value) pairs.

    The sandbox implements the part of Ironclad's filter formulas an exact look-up needs; any other
    formula is refused rather than silently matching everything.
    """
    if not formula:
        return []
    text = formula.strip()
    parts = [text]
    if text.startswith("And(") and text.endswith(")"):
        parts = [p.strip() for p in re.split(r",\s*(?=Equals\()", text[4:-1])]
    pairs = []
    for part in parts:
        match = _FILTER_EQUALS.match(part)
        if match is None:
            raise IroncladError(
                400, "INVALID_PARAM", f"unsupported filter formula: {part}", "filter"
            )
        pairs.append((match.group(1), re.sub(r"\\(.)", r"\1", match.group(2))))
    return pairs


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = "NOT_FOUND" if exc.status_code == 404 else "INVALID_REQUEST"
    message = "not found" if exc.status_code == 404 else str(exc.detail)
    return JSONResponse({"code": code, "message": message}, status_code=exc.status_code)


async def _unexpected(request: Request, exc: Exception) -> Response:
    return JSONResponse({"code": "SERVER_ERROR", "message": f"{type(exc).__name__}: {exc}"}, 500)


def create_app(
    state_file: Path | None = None,
    webhook_url: str | None = None,
    *,
    api_key: str = SANDBOX_API_KEY,
    max_body_bytes: int = MAX_BODY_BYTES,
    policy: DeliveryPolicy | None = None,
) -> Starlette:
    """Build the Ironclad emulator.

    Args:
        state_file: JSON file the state (workflows, webhooks, deliveries, the signing key, issued
            tokens) is written through to; deliveries still pending are resumed at start-up.
        webhook_url: a webhook subscribed at start-up (when none is registered yet) to workflow
            launch, cancellation, completion and fully-signed events: the product's
            ``/webhooks/ironclad``.
        api_key: the legacy bearer API key the REST routes accept.
        max_body_bytes: larger request bodies are refused with 413.
        policy: delivery retries and backoff.
    """
    # One key per emulator process, kept across resets (a reset is a fresh account, and RSA key
    # generation is the slowest thing the emulator does); rotated only on request.
    signing_key = new_private_key_pem()
    store = StateStore(state_file, lambda: _initial_state(signing_key))
    for key, value in _initial_state(signing_key).items():
        store.data.setdefault(key, value)
    emulator = IroncladEmulator(
        store, policy or DeliveryPolicy(), api_key=api_key, webhook_url=webhook_url
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        emulator.delivery.resume_pending()
        yield
        await emulator.delivery.aclose()

    def too_large() -> Response:
        return JSONResponse(
            {"code": "INVALID_PARAM", "message": f"request body exceeds {max_body_bytes} bytes"},
            status_code=413,
        )

    app = Starlette(
        routes=emulator.routes(),
        middleware=[Middleware(BodyLimitMiddleware, limit=max_body_bytes, too_large=too_large)],
        exception_handlers={HTTPException: _http_error, Exception: _unexpected},
        lifespan=lifespan,
    )
    app.state.emulator = emulator
    return app
