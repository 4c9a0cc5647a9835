"""Ironclad's public REST API v1 over httpx: the calls the product makes, and its authentication.

Two ways in, as Ironclad offers them: a bearer API key (then a launch names its ``creator``, a user
of the account) or an OAuth client-credentials app, whose access token is fetched from
``/oauth/token``, renewed before it expires (and once more on a 401), and whose requests act as the
user named by ``x-as-user-email``.

Errors come back as ``IroncladHttpError`` carrying Ironclad's ``code``, ``message`` and ``param``;
transport failures are httpx's own exceptions. Classifying them is the caller's business.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from integrations.ironclad.mapping import encode_json
from runtime.settings import Settings

API_PATH = "/public/api/v1"
# What the product needs of an OAuth app; an app granted less gets 403 on the call it lacks.
SCOPES = (
    "public.workflows.createWorkflows",
    "public.workflows.readWorkflows",
    "public.workflows.readSignatures",
    "public.workflows.cancel",
)
PAGE_SIZE = 100
MAX_PAGES = 50


class IroncladHttpError(Exception):
    """Ironclad answered with an error status."""

    def __init__(
        self,
        status: int,
        code: str | None,
        message: str,
        param: str | None,
        headers: httpx.Headers,
    ) -> None:
        super().__init__(f"{status} {code or ''}: {message}" + (f" ({param})" if param else ""))
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.headers = headers


def _error(response: httpx.Response) -> IroncladHttpError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = body.get("code") or body.get("error")
        message = body.get("message") or body.get("error_description") or response.text
        param = body.get("param")
        return IroncladHttpError(
            response.status_code,
            str(code) if code else None,
            str(message),
            str(param) if param else None,
            response.headers,
        )
    return IroncladHttpError(
        response.status_code,
        None,
        response.text[:300] or response.reason_phrase,
        None,
        response.headers,
    )


class IroncladApi:
    """One authenticated connection pool to Ironclad, shared by every activity of a process."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        as_user_email: str | None = None,
        timeout_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if api_key is None and (client_id is None or client_secret is None):
            raise ValueError("Ironclad needs an API key or an OAuth client id and secret")
        self.base_url = base_url.rstrip("/")
        self.uses_oauth = api_key is None
        self._api_key = api_key
        self._client_id = client_id
        self._client_secret = client_secret
        self.as_user_email = as_user_email
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            transport=transport,
        )
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = asyncio.Lock()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- authentication -------------------------------------------------------------------

    async def _bearer(self, *, renew: bool = False) -> str:
        if self._api_key is not None:
            return self._api_key
        async with self._token_lock:
            # Renewed a minute early so a request in flight never carries an expired token.
            if renew or self._token is None or time.monotonic() > self._token_expires - 60:
                response = await self._http.post(
                    "/oauth/token",
                    data={
                        "grant_type": "client_credentials",
                        "client_id": self._client_id or "",
                        "client_secret": self._client_secret or "",
                        "scope": " ".join(SCOPES),
                    },
                )
                if response.status_code != 200:
                    raise _error(response)
                body = response.json()
                self._token = str(body["access_token"])
                self._token_expires = time.monotonic() + float(body.get("expires_in", 3600))
            return self._token

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        content = encode_json(json_body) if json_body is not None else None
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {await self._bearer(renew=attempt == 2)}"}
            if content is not None:
                headers["Content-Type"] = "application/json"
            if self.uses_oauth and self.as_user_email:
                headers["x-as-user-email"] = self.as_user_email
            response = await self._http.request(
                method, API_PATH + path, content=content, params=params, headers=headers
            )
            # A 401 with an OAuth token may be a token revoked early: one fresh token, one retry.
            if response.status_code == 401 and self.uses_oauth and attempt == 1:
                continue
            if response.status_code >= 400:
                raise _error(response)
            return response
        raise AssertionError("unreachable")

    # --- workflows ------------------------------------------------------------------------

    async def launch_workflow(
        self, template_id: str, attributes: dict[str, Any], *, creator_email: str | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"template": template_id, "attributes": attributes}
        if not self.uses_oauth:
            # Required with an API key; Ironclad ignores it for OAuth tokens.
            body["creator"] = {"type": "email", "email": creator_email}
        result: dict[str, Any] = (await self._request("POST", "/workflows", json_body=body)).json()
        return result

    async def list_workflows(
        self, *, template_id: str | None, statuses: list[str], formula: str | None
    ) -> list[dict[str, Any]]:
        """Every workflow matching, all pages read (bounded: a deal has a handful at most)."""
        found: list[dict[str, Any]] = []
        for page in range(MAX_PAGES):
            params: dict[str, Any] = {
                "page": page,
                "pageSize": PAGE_SIZE,
                "status": ",".join(statuses),
            }
            if template_id:
                params["template"] = template_id
            if formula:
                params["filter"] = formula
            body = (await self._request("GET", "/workflows", params=params)).json()
            chunk = body.get("list") or []
            found.extend(chunk)
            if len(chunk) < PAGE_SIZE or len(found) >= int(body.get("count", 0)):
                break
        return found

    async def get_workflow(self, workflow_id: str) -> dict[str, Any]:
        result: dict[str, Any] = (await self._request("GET", f"/workflows/{workflow_id}")).json()
        return result

    async def get_signatures(self, workflow_id: str) -> dict[str, Any]:
        result: dict[str, Any] = (
            await self._request("GET", f"/workflows/{workflow_id}/signatures")
        ).json()
        return result

    async def cancel_workflow(self, workflow_id: str, comment: str) -> None:
        await self._request(
            "POST", f"/workflows/{workflow_id}/cancel", json_body={"comment": {"message": comment}}
        )

    async def verification_key(self) -> str:
        """The PEM public key webhook signatures are checked with."""
        return (await self._request("GET", "/webhooks/verification-key")).text


def build_ironclad_api(settings: Settings) -> IroncladApi:
    """The process's Ironclad client: OAuth client credentials when a client id is set, else the
    API key."""
    secret = settings.ironclad_client_secret
    key = settings.ironclad_api_key
    if settings.ironclad_client_id is not None:
        if secret is None:
            raise ValueError("QTC_IRONCLAD_CLIENT_SECRET is required with QTC_IRONCLAD_CLIENT_ID")
        key = None
    elif key is None:
        raise ValueError("set QTC_IRONCLAD_API_KEY, or QTC_IRONCLAD_CLIENT_ID and _SECRET")
    return IroncladApi(
        settings.ironclad_base_url,
        api_key=key.get_secret_value() if key else None,
        client_id=settings.ironclad_client_id,
        client_secret=secret.get_secret_value() if secret else None,
        as_user_email=settings.ironclad_user_email,
        timeout_s=settings.ironclad_timeout_s,
    )
