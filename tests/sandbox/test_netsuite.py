"""The NetSuite emulator: TBA, external-id upserts, sublists, SuiteQL, errors, limits, spoken to
with httpx and the adapter's own signer (oauthlib), as the product speaks to NetSuite."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA1, SIGNATURE_HMAC_SHA256
from oauthlib.oauth1 import Client as OAuth1Client
from pydantic import SecretStr

from integrations.netsuite.client import (
    NetSuiteClient,
    NetSuiteError,
    TbaCredentials,
    build_netsuite_http,
)
from qtc.catalog import load_catalog
from sandbox.netsuite.app import SANDBOX_CREDENTIALS, create_app
from sandbox.netsuite.suiteql import Row, SuiteQLError, run_query
from sandbox.stripe.testing import serve_app

CATALOG = Path(__file__).parents[2] / "catalog.toml"
CREDS = TbaCredentials(
    account=SANDBOX_CREDENTIALS.account,
    consumer_key=SANDBOX_CREDENTIALS.consumer_key,
    consumer_secret=SecretStr(SANDBOX_CREDENTIALS.consumer_secret),
    token_id=SANDBOX_CREDENTIALS.token_id,
    token_secret=SecretStr(SANDBOX_CREDENTIALS.token_secret),
)


@pytest.fixture(scope="session")
def netsuite_emulator_url() -> Iterator[str]:
    with serve_app(create_app(catalog_path=CATALOG)) as url:
        yield url


@pytest.fixture
def ns_url(netsuite_emulator_url: str) -> str:
    httpx.post(f"{netsuite_emulator_url}/_sandbox/reset").raise_for_status()
    return netsuite_emulator_url


@pytest.fixture
def http(ns_url: str) -> Iterator[httpx.Client]:
    with build_netsuite_http(f"{ns_url}/services/rest", CREDS, 10) as client:
        yield client


@pytest.fixture
def ns(http: httpx.Client) -> NetSuiteClient:
    return NetSuiteClient(http)


def signed_headers(
    url: str,
    method: str = "GET",
    *,
    consumer_secret: str = SANDBOX_CREDENTIALS.consumer_secret,
    method_name: str = SIGNATURE_HMAC_SHA256,
    realm: str = SANDBOX_CREDENTIALS.account,
    timestamp: str | None = None,
) -> dict[str, str]:
    signer = OAuth1Client(
        SANDBOX_CREDENTIALS.consumer_key,
        client_secret=consumer_secret,
        resource_owner_key=SANDBOX_CREDENTIALS.token_id,
        resource_owner_secret=SANDBOX_CREDENTIALS.token_secret,
        signature_method=method_name,
        realm=realm,
        timestamp=timestamp,
    )
    _, headers, _ = signer.sign(url, http_method=method)
    return {"Authorization": headers["Authorization"]}


def customer_body(**overrides: Any) -> dict[str, Any]:
    body = {
        "companyName": "Acme Robotics, Inc.",
        "email": "ap@acme.example",
        "subsidiary": {"id": "1"},
        "currency": {"id": "1"},
    }
    return {**body, **overrides}


def item_ids(ns: NetSuiteClient) -> dict[str, str]:
    return {row["itemid"]: row["id"] for row in ns.suiteql("SELECT id, itemid FROM item")}


def invoice_body(ns: NetSuiteClient, customer_id: str, **overrides: Any) -> dict[str, Any]:
    items = item_ids(ns)
    body = {
        "entity": {"id": customer_id},
        "tranDate": "2026-12-15",
        "dueDate": "2027-01-14",
        "memo": "ACME-0001",
        "item": {
            "items": [
                {
                    "item": {"id": items["PLATFORM-PRO"]},
                    "quantity": 50,
                    "rate": 1296,
                    "amount": 64800,
                    "revRecStartDate": "2026-12-15",
                    "revRecEndDate": "2027-12-14",
                },
                {
                    "item": {"id": items["IMPL-SERVICES"]},
                    "quantity": 1,
                    "rate": 5000,
                    "revRecStartDate": "2026-12-15",
                    "revRecEndDate": "2026-12-15",
                },
            ]
        },
    }
    return {**body, **overrides}


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert body["status"] == response.status_code
    assert body["type"].startswith("https://")
    assert body["title"]
    detail: dict[str, Any] = body["o:errorDetails"][0]
    return detail


# --- token-based authentication ---------------------------------------------------------------


def test_every_catalog_sku_is_an_item_named_by_its_sku(ns: NetSuiteClient) -> None:
    assert set(item_ids(ns)) == {sku.code for sku in load_catalog(CATALOG).skus}


def test_an_unsigned_request_is_refused_with_netsuites_invalid_login(ns_url: str) -> None:
    response = httpx.get(f"{ns_url}/services/rest/record/v1/customer")

    assert response.status_code == 401
    assert error_of(response)["o:errorCode"] == "INVALID_LOGIN"
    assert 'error="token_rejected"' in response.headers["WWW-Authenticate"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"consumer_secret": "not-the-secret"}, "signature does not match"),
        ({"method_name": SIGNATURE_HMAC_SHA1}, "HMAC-SHA256"),
        ({"realm": "OTHER_ACCOUNT"}, "realm"),
        ({"timestamp": str(int(time.time()) - 600)}, "from now"),
    ],
    ids=["wrong-secret", "hmac-sha1", "wrong-realm", "stale-timestamp"],
)
def test_a_request_whose_signature_is_wrong_or_stale_is_refused(
    ns_url: str, change: dict[str, str], reason: str
) -> None:
    url = f"{ns_url}/services/rest/record/v1/customer"
    response = httpx.get(url, headers=signed_headers(url, **change))

    assert response.status_code == 401
    assert error_of(response)["o:errorCode"] == "INVALID_LOGIN"
    received = httpx.get(f"{ns_url}/_sandbox/requests").json()["data"]
    assert reason in received[-1]["auth"]


def test_a_signature_does_not_cover_another_query(ns_url: str) -> None:
    url = f"{ns_url}/services/rest/record/v1/customer"
    headers = signed_headers(url + "?limit=1")

    assert httpx.get(url + "?limit=1000", headers=headers).status_code == 401


def test_a_replayed_request_is_refused_for_its_nonce(ns_url: str) -> None:
    url = f"{ns_url}/services/rest/record/v1/customer"
    headers = signed_headers(url)

    assert httpx.get(url, headers=headers).status_code == 200
    replayed = httpx.get(url, headers=headers)

    assert replayed.status_code == 401
    assert "used before" in httpx.get(f"{ns_url}/_sandbox/requests").json()["data"][-1]["auth"]


# --- records and external ids -----------------------------------------------------------------


def test_upsert_by_external_id_creates_once_then_updates_the_same_record(
    ns: NetSuiteClient, http: httpx.Client
) -> None:
    first = ns.upsert("customer", "qtc-cus_1", customer_body(), replace=None)
    again = ns.upsert(
        "customer", "qtc-cus_1", customer_body(email="billing@acme.example"), replace=None
    )

    assert first == again
    by_eid = http.get("/record/v1/customer/eid:qtc-cus_1").json()
    assert by_eid["id"] == first
    assert by_eid["externalId"] == "qtc-cus_1"
    assert by_eid["email"] == "billing@acme.example"
    assert by_eid["currency"]["refName"] == "USD"
    assert [row["id"] for row in ns.suiteql("SELECT id FROM customer")] == [first]


def test_a_write_answers_204_with_the_record_address(http: httpx.Client) -> None:
    response = http.post("/record/v1/customer", json=customer_body(externalId="x-1"))

    assert response.status_code == 204
    assert response.content == b""
    record_id = response.headers["Location"].rsplit("/", 1)[-1]
    assert http.get(f"/record/v1/customer/{record_id}").json()["externalId"] == "x-1"
    duplicate = http.post("/record/v1/customer", json=customer_body(externalId="x-1"))
    assert duplicate.status_code == 400
    assert error_of(duplicate)["o:errorCode"] == "DUP_RCRD"


def test_a_missing_record_is_404_nonexistent_id(http: httpx.Client) -> None:
    for path in ("/record/v1/invoice/99999", "/record/v1/invoice/eid:nobody"):
        response = http.get(path)
        assert response.status_code == 404
        assert error_of(response)["o:errorCode"] == "NONEXISTENT_ID"


def test_an_invoice_upserted_again_without_replace_gains_lines_and_with_replace_keeps_them(
    ns: NetSuiteClient, http: httpx.Client
) -> None:
    customer = ns.upsert("customer", "qtc-cus_1", customer_body(), replace=None)
    body = invoice_body(ns, customer)
    invoice = ns.upsert("invoice", "qtc-in_1", body, replace="item")
    assert ns.upsert("invoice", "qtc-in_1", body, replace="item") == invoice
    kept = ns.get("invoice", invoice, expand=True)
    assert len(kept["item"]["items"]) == 2

    ns.upsert("invoice", "qtc-in_1", body, replace=None)

    doubled = ns.get("invoice", invoice, expand=True)
    assert len(doubled["item"]["items"]) == 4
    assert doubled["total"] == 2 * kept["total"]


def test_an_invoice_is_read_with_its_lines_only_when_expanded(
    ns: NetSuiteClient, http: httpx.Client
) -> None:
    customer = ns.upsert("customer", "qtc-cus_1", customer_body(), replace=None)
    invoice = ns.upsert("invoice", "qtc-in_1", invoice_body(ns, customer), replace="item")

    plain = http.get(f"/record/v1/invoice/{invoice}").json()
    assert set(plain["item"]) == {"links"}
    expanded = ns.get("invoice", invoice, expand=True)
    lines = expanded["item"]["items"]
    assert [(line["item"]["refName"], line["amount"]) for line in lines] == [
        ("PLATFORM-PRO", 64800),
        ("IMPL-SERVICES", 5000),
    ]
    assert lines[0]["revRecEndDate"] == "2027-12-14"
    assert (expanded["subtotal"], expanded["total"]) == (69800, 69800)
    assert expanded["memo"] == "ACME-0001"
    assert expanded["entity"]["id"] == customer
    assert expanded["tranId"].startswith("INV")


def test_a_taxable_item_makes_the_total_differ_from_the_lines(
    ns: NetSuiteClient, ns_url: str
) -> None:
    httpx.put(f"{ns_url}/_sandbox/items/IMPL-SERVICES", json={"taxRate": "8.25"})
    customer = ns.upsert("customer", "qtc-cus_1", customer_body(), replace=None)
    invoice = ns.upsert("invoice", "qtc-in_1", invoice_body(ns, customer), replace="item")

    record = ns.get("invoice", invoice, expand=True)

    assert (record["subtotal"], record["taxTotal"], record["total"]) == (69800, 412.5, 70212.5)


@pytest.mark.parametrize(
    ("problem", "code", "path"),
    [
        ("unknown-item", "INVALID_CONTENT", "item.items[0].item"),
        ("currency-not-in-subsidiary", "INVALID_VALUE", "currency"),
        ("rev-rec-end-before-start", "INVALID_VALUE", "item.items[0].revRecEndDate"),
        ("unknown-field", "INVALID_CONTENT", "discountRate"),
        ("no-customer", "INVALID_CONTENT", "entity"),
    ],
)
def test_an_invalid_invoice_is_refused_naming_the_field(
    ns: NetSuiteClient, ns_url: str, problem: str, code: str, path: str
) -> None:
    customer = ns.upsert("customer", "qtc-cus_1", customer_body(), replace=None)
    body = invoice_body(ns, customer)
    first = body["item"]["items"][0]
    if problem == "unknown-item":
        first["item"] = {"id": "424242"}
    elif problem == "currency-not-in-subsidiary":
        httpx.put(f"{ns_url}/_sandbox/subsidiaries/1", json={"currencies": ["EUR"]})
    elif problem == "rev-rec-end-before-start":
        first["revRecEndDate"] = "2026-12-01"
    elif problem == "unknown-field":
        body["discountRate"] = 5
    else:
        body["entity"] = {"id": "424242"}

    with pytest.raises(NetSuiteError) as raised:
        ns.upsert("invoice", "qtc-in_1", body, replace="item")

    assert (raised.value.status, raised.value.code, raised.value.path) == (400, code, path)
    assert list(ns.suiteql("SELECT id FROM transaction")) == []


def test_a_customer_in_a_currency_its_subsidiary_lacks_is_refused(
    ns: NetSuiteClient, ns_url: str
) -> None:
    with pytest.raises(NetSuiteError) as raised:
        ns.upsert("customer", "qtc-cus_1", customer_body(currency={"id": "4"}), replace=None)

    assert raised.value.path == "currency"
    assert "CAD" in raised.value.detail


# --- SuiteQL ----------------------------------------------------------------------------------


def test_suiteql_filters_orders_and_pages(http: httpx.Client) -> None:
    query = {
        "q": "SELECT id, itemid FROM item WHERE itemid IN ('PLATFORM-PRO', 'IMPL-SERVICES') "
        "ORDER BY itemid DESC"
    }
    headers = {"Prefer": "transient"}
    first = http.post("/query/v1/suiteql", params={"limit": 1}, json=query, headers=headers)

    assert first.status_code == 200
    page = first.json()
    assert (page["count"], page["hasMore"], page["totalResults"]) == (1, True, 2)
    assert page["items"][0]["itemid"] == "PLATFORM-PRO"
    assert any(link["rel"] == "next" for link in page["links"])
    second = http.post(
        "/query/v1/suiteql", params={"limit": 1, "offset": 1}, json=query, headers=headers
    ).json()
    assert [row["itemid"] for row in second["items"]] == ["IMPL-SERVICES"]
    assert second["hasMore"] is False


def test_suiteql_needs_the_transient_header_and_known_columns(http: httpx.Client) -> None:
    no_header = http.post("/query/v1/suiteql", json={"q": "SELECT id FROM item"})
    assert no_header.status_code == 400
    unknown = http.post(
        "/query/v1/suiteql",
        json={"q": "SELECT price FROM item"},
        headers={"Prefer": "transient"},
    )
    assert unknown.status_code == 400
    assert error_of(unknown)["o:errorCode"] == "INVALID_PARAMETER"
    assert "price" in error_of(unknown)["detail"]


def test_suiteql_subset_semantics() -> None:
    rows: list[Row] = [
        {"id": "1", "symbol": "USD", "name": "O'Brien dollar"},
        {"id": "2", "symbol": "eur", "name": None},
        {"id": "10", "symbol": "GBP", "name": "pound"},
    ]
    columns = ["id", "symbol", "name"]

    def q(text: str) -> list[str | None]:
        return [
            r["id"] for r in run_query(text, lambda t: (columns, rows) if t == "currency" else None)
        ]

    assert q("select id from currency where upper(symbol) = 'EUR'") == ["2"]
    assert q("SELECT id FROM currency WHERE name = 'O''Brien dollar'") == ["1"]
    assert q("SELECT id FROM currency WHERE name IS NULL OR id > 5 ORDER BY id") == ["2", "10"]
    assert q("SELECT id FROM currency WHERE NOT (symbol = 'USD') AND symbol NOT IN ('GBP')") == [
        "2"
    ]
    assert q("SELECT id FROM currency ORDER BY id DESC") == ["10", "2", "1"]
    for bad in (
        "SELECT id FROM nothing",
        "SELECT id FROM currency GROUP BY id",
        "DELETE FROM currency",
    ):
        with pytest.raises(SuiteQLError):
            q(bad)


# --- limits and faults ------------------------------------------------------------------------


def test_more_requests_than_the_concurrency_limit_are_refused_with_429(
    ns_url: str, ns: NetSuiteClient
) -> None:
    httpx.post(f"{ns_url}/_sandbox/config", json={"concurrency_limit": 1}).raise_for_status()
    httpx.post(f"{ns_url}/_sandbox/hold").raise_for_status()
    first: list[Any] = []
    holder = threading.Thread(target=lambda: first.append(list(ns.suiteql("SELECT id FROM item"))))
    holder.start()
    deadline = time.monotonic() + 10
    while httpx.get(f"{ns_url}/_sandbox/stats").json()["in_flight"] < 1:
        assert time.monotonic() < deadline, "the held request never arrived"
        time.sleep(0.01)

    with pytest.raises(NetSuiteError) as raised:
        list(ns.suiteql("SELECT id FROM currency"))

    httpx.post(f"{ns_url}/_sandbox/release").raise_for_status()
    holder.join(10)
    assert (raised.value.status, raised.value.code) == (429, "CONCURRENCY_LIMIT_EXCEEDED")
    assert "Retry-After" not in raised.value.headers
    assert len(first[0]) == len(load_catalog(CATALOG).skus)


def test_injected_faults_answer_in_netsuites_shape(ns_url: str, ns: NetSuiteClient) -> None:
    httpx.post(
        f"{ns_url}/_sandbox/faults", json={"rules": [{"path": "suiteql", "rate_500": 1}]}
    ).raise_for_status()

    with pytest.raises(NetSuiteError) as raised:
        list(ns.suiteql("SELECT id FROM item"))

    assert (raised.value.status, raised.value.code) == (500, "UNEXPECTED_ERROR")
    assert httpx.get(f"{ns_url}/_sandbox/stats").json()["faults_injected"]["500"] == 1


def test_state_survives_a_restart_when_written_through(tmp_path: Path) -> None:
    state = tmp_path / "netsuite.json"

    def client(url: str) -> NetSuiteClient:
        return NetSuiteClient(build_netsuite_http(f"{url}/services/rest", CREDS, 10))

    with serve_app(create_app(state, catalog_path=CATALOG)) as url:
        created = client(url).upsert("customer", "qtc-cus_9", customer_body(), replace=None)
    with serve_app(create_app(state, catalog_path=CATALOG)) as url:
        assert client(url).get("customer", created)["externalId"] == "qtc-cus_9"


def test_a_customer_address_in_a_country_netsuite_does_not_list_is_refused(
    ns: NetSuiteClient,
) -> None:
    address = {"addr1": "1 Main St", "country": {"id": "Texas"}}
    body = customer_body(addressBook={"items": [{"addressBookAddress": address}]})

    with pytest.raises(NetSuiteError) as raised:
        ns.upsert("customer", "qtc-cus_1", body, replace="addressBook")

    assert raised.value.code == "INVALID_CONTENT"
    assert raised.value.path == "addressBook.items[0].addressBookAddress.country"
