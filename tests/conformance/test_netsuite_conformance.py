"""Every REST route of the NetSuite emulator, driven through the adapter's own client (httpx with
an oauthlib TBA signer; NetSuite publishes no Python SDK), answers with the structures NetSuite's
REST web services documentation gives: a record with ``links``, ``id`` and references
``{"links", "id", "refName"}``; a collection (``links``, ``count``, ``hasMore``, ``items``,
``offset``, ``totalResults``); ``204`` with ``Location`` for a write; and the error object with
``o:errorDetails``. Each refusal NetSuite documents is a row of the probe table."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from starlette.routing import Route

from integrations.netsuite.client import (
    NetSuiteClient,
    NetSuiteError,
    TbaCredentials,
    build_netsuite_http,
)
from sandbox.netsuite.app import SANDBOX_CREDENTIALS, create_app
from sandbox.stripe.testing import serve_app
from tests.conformance.recording import Exchange, Recorder
from tests.conformance.vendor_models import DocuSignSchemas

CATALOG = Path(__file__).parents[2] / "catalog.toml"
CREDS = TbaCredentials(
    account=SANDBOX_CREDENTIALS.account,
    consumer_key=SANDBOX_CREDENTIALS.consumer_key,
    consumer_secret=SecretStr(SANDBOX_CREDENTIALS.consumer_secret),
    token_id=SANDBOX_CREDENTIALS.token_id,
    token_secret=SecretStr(SANDBOX_CREDENTIALS.token_secret),
)

LINKS: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["rel", "href"],
        "additionalProperties": False,
        "properties": {"rel": {"type": "string"}, "href": {"type": "string"}},
    },
}
# "Error Handling in REST Web Services": type, title, status and the o:errorDetails list.
ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "o:errorDetails"],
    "additionalProperties": False,
    "properties": {
        "type": {"type": "string", "pattern": "^https://"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "o:errorDetails": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["detail", "o:errorCode"],
                "additionalProperties": False,
                "properties": {
                    "detail": {"type": "string"},
                    "o:errorCode": {"type": "string", "pattern": "^[A-Z_]+$"},
                    "o:errorPath": {"type": "string"},
                    "o:errorHeader": {"type": "string"},
                    "o:errorQueryParam": {"type": "string"},
                },
            },
        },
    },
}
# "Collection Paging" and "Executing SuiteQL Queries Through REST Web Services".
COLLECTION: dict[str, Any] = {
    "type": "object",
    "required": ["links", "count", "hasMore", "items", "offset", "totalResults"],
    "additionalProperties": False,
    "properties": {
        "links": LINKS,
        "count": {"type": "integer"},
        "hasMore": {"type": "boolean"},
        "offset": {"type": "integer"},
        "totalResults": {"type": "integer"},
        "items": {
            "type": "array",
            "items": {"type": "object", "required": ["links"], "properties": {"links": LINKS}},
        },
    },
}
SUITEQL_ROW: dict[str, Any] = {
    "type": "object",
    "required": ["links"],
    "properties": {"links": {"type": "array", "maxItems": 0}},
    # SuiteQL returns every column as a string (or null), booleans as T / F.
    "additionalProperties": {"type": ["string", "null"]},
}
REFERENCE: dict[str, Any] = {
    "type": "object",
    "required": ["links", "id", "refName"],
    "additionalProperties": False,
    "properties": {"links": LINKS, "id": {"type": "string"}, "refName": {"type": "string"}},
}
# A select field of fixed values (a transaction's status): id and name, no record behind it.
SELECT: dict[str, Any] = {
    "type": "object",
    "required": ["id", "refName"],
    "additionalProperties": False,
    "properties": {"id": {"type": "string"}, "refName": {"type": "string"}},
}
SELECT_FIELDS = frozenset({"status"})
SUBLIST: dict[str, Any] = {
    "type": "object",
    "required": ["links"],
    "properties": {
        "links": LINKS,
        "count": {"type": "integer"},
        "hasMore": {"type": "boolean"},
        "offset": {"type": "integer"},
        "totalResults": {"type": "integer"},
        "items": {"type": "array", "items": {"type": "object"}},
    },
    "additionalProperties": False,
}


def record_violations(body: Any) -> list[str]:
    """A record: ``links`` and ``id``, scalars, references, selects, and sublists (their links,
    or their lines when expanded, whose references are references too)."""
    problems = DocuSignSchemas.check(
        {
            "type": "object",
            "required": ["links", "id"],
            "properties": {"links": LINKS, "id": {"type": "string"}},
        },
        body,
    )
    for name, value in body.items() if isinstance(body, dict) else ():
        if name in ("links", "id") or not isinstance(value, dict):
            continue
        if name in SELECT_FIELDS:
            schema = SELECT
        elif "items" in value or set(value) == {"links"}:
            schema = SUBLIST
        else:
            schema = REFERENCE
        problems += [f"{name}: {p}" for p in DocuSignSchemas.check(schema, value)]
        for line in value.get("items") or []:
            for key, field in line.items():
                if isinstance(field, dict):
                    found = DocuSignSchemas.check(REFERENCE, field)
                    problems += [f"{name}.{key}: {p}" for p in found]
    return problems


def customer_body(**extra: Any) -> dict[str, Any]:
    return {
        "companyName": "Acme Robotics, Inc.",
        "email": "ap@acme.example",
        "subsidiary": {"id": "1"},
        "currency": {"id": "1"},
        **extra,
    }


@pytest.fixture(scope="module")
def recorded() -> Iterator[tuple[list[Exchange], list[Route]]]:
    app = create_app(catalog_path=CATALOG, concurrency_limit=1)
    recorder = Recorder(app)
    with serve_app(recorder) as url, build_netsuite_http(f"{url}/services/rest", CREDS, 10) as http:
        ns = NetSuiteClient(http)
        items = {row["itemid"]: row["id"] for row in ns.suiteql("SELECT id, itemid FROM item")}
        created = http.post("/record/v1/customer", json=customer_body(externalId="conf-1"))
        created.raise_for_status()
        customer = created.headers["Location"].rsplit("/", 1)[-1]
        http.get(f"/record/v1/customer/{customer}").raise_for_status()
        http.get("/record/v1/customer/eid:conf-1").raise_for_status()
        http.get("/record/v1/customer", params={"limit": 1}).raise_for_status()
        http.patch(f"/record/v1/customer/{customer}", json={"phone": "555-0100"}).raise_for_status()
        invoice = ns.upsert(
            "invoice",
            "conf-in-1",
            {
                "entity": {"id": customer},
                "tranDate": "2026-12-15",
                "item": {
                    "items": [{"item": {"id": items["PLATFORM-PRO"]}, "quantity": 5, "rate": 10}]
                },
            },
            replace="item",
        )
        ns.get("invoice", invoice)
        ns.get("invoice", invoice, expand=True)
        http.get("/record/v1/serviceitem/" + items["PLATFORM-PRO"]).raise_for_status()
        http.get("/record/v1/currency/1").raise_for_status()
        http.get("/record/v1/subsidiary/1").raise_for_status()
        other = ns.upsert("customer", "conf-2", customer_body(), replace=None)
        http.delete(f"/record/v1/customer/{other}").raise_for_status()
        for probe in PROBES:
            with pytest.raises(httpx.HTTPStatusError):
                probe.request(url, http)
        with pytest.raises(NetSuiteError):
            ns.upsert("customer", "conf-3", customer_body(currency={"id": "4"}), replace=None)
    routes = [r for r in app.routes if isinstance(r, Route) and not r.path.startswith("/_")]
    yield recorder.exchanges, routes


def test_every_rest_route_was_driven(recorded: tuple[list[Exchange], list[Route]]) -> None:
    exchanges, routes = recorded
    answered = {(e.method, e.path) for e in exchanges if e.status < 300}
    for route in routes:
        for method in route.methods or ():
            if method == "HEAD":
                continue
            assert any(m == method and route.path_regex.match(p) for m, p in answered), (
                f"{method} {route.path} was not driven"
            )


def test_every_response_has_netsuites_structure(
    recorded: tuple[list[Exchange], list[Route]],
) -> None:
    exchanges, _ = recorded
    problems: dict[str, list[str]] = {}
    for e in exchanges:
        if e.path.startswith("/_sandbox/"):
            continue  # the sandbox's own controls, no NetSuite route
        where = f"{e.method} {e.path} ({e.status})"
        if e.status == 204:
            found = [] if e.body == b"" else ["a 204 has no body"]
        elif e.status >= 400:
            found = DocuSignSchemas.check(ERROR, e.json())
            if not found and e.json()["status"] != e.status:
                found = ["status differs from the HTTP status"]
        elif e.path.endswith("/suiteql"):
            found = DocuSignSchemas.check(COLLECTION, e.json())
            for row in e.json()["items"]:
                found += DocuSignSchemas.check(SUITEQL_ROW, row)
        elif e.path.count("/") == 5:  # /services/rest/record/v1/{type}
            found = DocuSignSchemas.check(COLLECTION, e.json())
        else:
            found = record_violations(e.json())
        if found:
            problems[where] = found

    assert problems == {}


# --- refusals NetSuite documents ------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    name: str
    request: Callable[[str, httpx.Client], object]
    status: int
    code: str
    # The o:errorPath NetSuite names, where its documentation shows one.
    path: str | None
    documented: str


def _raise(response: httpx.Response) -> httpx.Response:
    return response.raise_for_status()


def _held_second_request(url: str, http: httpx.Client) -> object:
    """A request while the account's only slot is taken (the emulator runs with limit 1)."""
    httpx.post(f"{url}/_sandbox/hold").raise_for_status()
    holder = threading.Thread(target=lambda: http.get("/record/v1/currency/1"))
    holder.start()
    deadline = time.monotonic() + 10
    while httpx.get(f"{url}/_sandbox/stats").json()["in_flight"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    try:
        return _raise(http.get("/record/v1/currency/2"))
    finally:
        httpx.post(f"{url}/_sandbox/release").raise_for_status()
        holder.join(10)


ERRORS_DOC = "NetSuite Help, Error Handling in REST Web Services"
PROBES = [
    Probe(
        "invalid login: unsigned request",
        lambda url, http: _raise(httpx.get(f"{url}/services/rest/record/v1/customer")),
        401,
        "INVALID_LOGIN",
        None,
        f"{ERRORS_DOC}: Invalid Login Information",
    ),
    Probe(
        "invalid reference in a sublist line",
        lambda url, http: _raise(
            http.post(
                "/record/v1/invoice",
                json={"entity": {"id": "1001"}, "item": {"items": [{"item": {"id": "9999"}}]}},
            )
        ),
        400,
        "INVALID_CONTENT",
        "item.items[0].item",
        f"{ERRORS_DOC}: Request with an Invalid Body (o:errorPath points at the value)",
    ),
    Probe(
        "record instance that does not exist",
        lambda url, http: _raise(http.get("/record/v1/customer/999999")),
        404,
        "NONEXISTENT_ID",
        None,
        "NetSuite Help, Getting a Record Instance: 404 for an unknown instance",
    ),
    Probe(
        "SuiteQL on a field the record lacks",
        lambda url, http: _raise(
            http.post(
                "/query/v1/suiteql",
                json={"q": "SELECT nonesuch FROM item"},
                headers={"Prefer": "transient"},
            )
        ),
        400,
        "INVALID_PARAMETER",
        None,
        "NetSuite Help, Executing SuiteQL Queries Through REST Web Services",
    ),
    Probe(
        "more requests than the account's concurrency limit",
        _held_second_request,
        429,
        "CONCURRENCY_LIMIT_EXCEEDED",
        None,
        "NetSuite Help, Concurrency Governance: REST requests over the limit are 429",
    ),
]


@pytest.mark.parametrize("probe", PROBES, ids=[p.name for p in PROBES])
def test_the_emulator_refuses_as_netsuite_documents(probe: Probe) -> None:
    with (
        serve_app(create_app(catalog_path=CATALOG, concurrency_limit=1)) as url,
        build_netsuite_http(f"{url}/services/rest", CREDS, 10) as http,
    ):
        NetSuiteClient(http).upsert("customer", "probe", customer_body(), replace=None)
        with pytest.raises(httpx.HTTPStatusError) as caught:
            probe.request(url, http)

    detail = caught.value.response.json()["o:errorDetails"][0]
    answered = (caught.value.response.status_code, detail["o:errorCode"], detail.get("o:errorPath"))
    assert answered == (probe.status, probe.code, probe.path), probe.documented
