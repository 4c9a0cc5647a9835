"""The NetSuite REST client a worker process shares: httpx with token-based authentication.

TBA is OAuth 1.0a with HMAC-SHA256 whose realm is the account id. Every request is signed afresh
(new nonce and timestamp, the query string included), so a retried request is never a replayed
one. The JSON body is not part of an OAuth 1.0a signature.

Money goes out as JSON numbers written from ``Decimal`` (never through a float) and comes back
parsed into ``Decimal``.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA256
from oauthlib.oauth1 import Client as OAuth1Client
from pydantic import SecretStr

from runtime.settings import SANDBOX_NETSUITE, SANDBOX_SECRETS, Settings

SUITEQL_PAGE = 1000


@dataclass(frozen=True)
class TbaCredentials:
    """An integration record's consumer key / secret and an access token for one account."""

    account: str
    consumer_key: str
    consumer_secret: SecretStr
    token_id: str
    token_secret: SecretStr


def default_base_url(account: str) -> str:
    """A real account's REST address: the account id in lower case, ``_`` as ``-``."""
    return f"https://{account.lower().replace('_', '-')}.suitetalk.api.netsuite.com/services/rest"


class TokenAuth(httpx.Auth):
    """Signs each request with OAuth 1.0a HMAC-SHA256 in the Authorization header."""

    def __init__(self, credentials: TbaCredentials) -> None:
        self._credentials = credentials

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        creds = self._credentials
        signer = OAuth1Client(
            creds.consumer_key,
            client_secret=creds.consumer_secret.get_secret_value(),
            resource_owner_key=creds.token_id,
            resource_owner_secret=creds.token_secret.get_secret_value(),
            signature_method=SIGNATURE_HMAC_SHA256,
            realm=creds.account,
        )
        _, headers, _ = signer.sign(str(request.url), http_method=request.method)
        request.headers["Authorization"] = headers["Authorization"]
        yield request


class NetSuiteError(Exception):
    """A NetSuite error answer: status, ``o:errorCode``, ``detail``, ``o:errorPath``."""

    def __init__(
        self,
        status: int,
        detail: str,
        code: str | None,
        path: str | None,
        headers: httpx.Headers,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.code = code
        self.path = path
        self.headers = headers


def encode_json(value: Any) -> str:
    """JSON text in which a ``Decimal`` is written as the exact number it holds."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} is not a JSON number")
        return format(value, "f")
    if isinstance(value, dict):
        return (
            "{" + ",".join(f"{json.dumps(str(k))}:{encode_json(v)}" for k, v in value.items()) + "}"
        )
    if isinstance(value, list | tuple):
        return "[" + ",".join(encode_json(v) for v in value) + "]"
    return json.dumps(value)


def _decode(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content or b"null", parse_float=Decimal)
    except ValueError:
        return None


def _error(response: httpx.Response) -> NetSuiteError:
    body = _decode(response)
    detail, code, path = response.text[:300] or response.reason_phrase, None, None
    if isinstance(body, dict):
        details = body.get("o:errorDetails")
        first = details[0] if isinstance(details, list) and details else None
        if isinstance(first, dict):
            detail = str(first.get("detail") or body.get("title") or detail)
            code = first.get("o:errorCode")
            path = first.get("o:errorPath")
        elif isinstance(body.get("title"), str):
            detail = body["title"]
    return NetSuiteError(response.status_code, detail, code, path, response.headers)


def external_key(external_id: str) -> str:
    """The path segment that addresses a record by external id."""
    return "eid:" + quote(external_id, safe="-._~")


class NetSuiteClient:
    """The few REST calls the ERP port makes; raises ``NetSuiteError`` on an error answer and
    lets ``httpx.TransportError`` through (the caller classifies both)."""

    def __init__(self, http: httpx.Client) -> None:
        self._http = http

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._http.request(method, path, **kwargs)
        if response.is_error:
            raise _error(response)
        return response

    def suiteql(self, query: str) -> Iterator[dict[str, Any]]:
        """Every row of a SuiteQL query, page after page."""
        offset = 0
        while True:
            page = _decode(
                self._send(
                    "POST",
                    "/query/v1/suiteql",
                    params={"limit": SUITEQL_PAGE, "offset": offset},
                    content=encode_json({"q": query}),
                    headers={"Content-Type": "application/json", "Prefer": "transient"},
                )
            )
            yield from page.get("items") or []
            if not page.get("hasMore"):
                return
            offset += SUITEQL_PAGE

    def upsert(
        self, record_type: str, external_id: str, body: dict[str, Any], *, replace: str | None
    ) -> str:
        """Create or update the record with this external id; its internal id."""
        response = self._send(
            "PUT",
            f"/record/v1/{record_type}/{external_key(external_id)}",
            params={"replace": replace} if replace else None,
            content=encode_json(body),
            headers={"Content-Type": "application/json"},
        )
        location = response.headers.get("Location", "")
        record_id = location.rstrip("/").rsplit("/", 1)[-1]
        if not record_id.isdigit():
            raise NetSuiteError(
                response.status_code,
                f"the upsert of {record_type} {external_id} answered no record address",
                None,
                None,
                response.headers,
            )
        return record_id

    def get(self, record_type: str, record_id: str, *, expand: bool = False) -> dict[str, Any]:
        params = {"expandSubResources": "true"} if expand else None
        body = _decode(self._send("GET", f"/record/v1/{record_type}/{record_id}", params=params))
        if not isinstance(body, dict):
            raise NetSuiteError(
                200, f"{record_type} {record_id} is not a JSON object", None, None, httpx.Headers()
            )
        return body


def build_netsuite_http(
    base_url: str, credentials: TbaCredentials, timeout_s: float
) -> httpx.Client:
    """The worker's one pooled, signing HTTP client for NetSuite."""
    return httpx.Client(
        base_url=base_url.rstrip("/"),
        auth=TokenAuth(credentials),
        timeout=httpx.Timeout(timeout_s, connect=5.0),
        headers={"Accept": "application/json"},
    )


def netsuite_credentials(settings: Settings) -> TbaCredentials:
    """The TBA credentials the settings give; the emulator's in the sandbox when unset.

    Raises:
        ValueError: Outside the sandbox, a NetSuite setting is missing (the message names each).
    """
    given: dict[str, str | None] = {
        "account": settings.netsuite_account,
        "consumer_key": settings.netsuite_consumer_key,
        "consumer_secret": _reveal(settings.netsuite_consumer_secret),
        "token_id": settings.netsuite_token_id,
        "token_secret": _reveal(settings.netsuite_token_secret),
    }
    if settings.sandbox:
        fallback = {
            **SANDBOX_NETSUITE,
            "consumer_secret": SANDBOX_SECRETS["netsuite_consumer_secret"],
            "token_secret": SANDBOX_SECRETS["netsuite_token_secret"],
        }
        given = {name: value or fallback[name] for name, value in given.items()}
    values = {name: value for name, value in given.items() if value}
    missing = [f"QTC_NETSUITE_{name.upper()}" for name in given if name not in values]
    if missing:
        raise ValueError("QTC_ERP=netsuite needs " + ", ".join(missing))
    return TbaCredentials(
        account=values["account"],
        consumer_key=values["consumer_key"],
        consumer_secret=SecretStr(values["consumer_secret"]),
        token_id=values["token_id"],
        token_secret=SecretStr(values["token_secret"]),
    )


def _reveal(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None


def netsuite_base_url(settings: Settings, account: str) -> str:
    """Where NetSuite's REST services are: set, the sandbox emulator, or the account's address."""
    if settings.netsuite_base_url:
        return settings.netsuite_base_url
    if settings.sandbox:
        return f"http://{settings.sandbox_host}:{settings.sandbox_netsuite_port}/services/rest"
    return default_base_url(account)


def build_netsuite_client(settings: Settings) -> tuple[NetSuiteClient, httpx.Client]:
    """The worker's NetSuite client from settings, and the HTTP client to close on exit."""
    credentials = netsuite_credentials(settings)
    base_url = netsuite_base_url(settings, credentials.account)
    http = build_netsuite_http(base_url, credentials, settings.netsuite_timeout_s)
    return NetSuiteClient(http), http
