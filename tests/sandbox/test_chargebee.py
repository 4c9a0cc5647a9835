"""The Chargebee emulator as the official SDK sees it: resources, errors, lists, keys, faults."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import chargebee
import httpx
import pytest
from chargebee import Chargebee

from integrations.chargebee.client import chargebee_client
from sandbox.chargebee.testing import API_KEY, SITE, serve_chargebee_emulator

YEAR_S = 366 * 86400


@pytest.fixture(scope="module")
def emulator_url() -> Iterator[str]:
    with serve_chargebee_emulator() as url:
        yield url


@pytest.fixture
def url(emulator_url: str) -> str:
    httpx.post(f"{emulator_url}/_sandbox/reset").raise_for_status()
    return emulator_url


@pytest.fixture
def cb(url: str) -> Chargebee:
    return chargebee_client(api_key=API_KEY, site=SITE, api_base=url)


def _key(name: str) -> dict[str, str]:
    return {"chargebee-idempotency-key": name}


def _customer(cb: Chargebee, id: str = "acme", **extra: Any) -> Any:
    params: dict[str, Any] = {
        "id": id,
        "company": "Acme Robotics, Inc.",
        "email": "ap@acme.example",
        "auto_collection": "off",
        "billing_address": {"line1": "1 Main St", "city": "Austin", "country": "US"},
        **extra,
    }
    return cb.Customer.create(params).customer


def _catalog(cb: Chargebee) -> None:
    cb.ItemFamily.create({"id": "qtc", "name": "QTC"})
    cb.Item.create({"id": "PRO", "name": "Pro", "type": "plan", "item_family_id": "qtc"})
    cb.Item.create({"id": "IMPL", "name": "Impl", "type": "charge", "item_family_id": "qtc"})
    cb.ItemPrice.create(
        {
            "id": "PRO-USD-Yearly",
            "name": "Pro USD yearly",
            "item_id": "PRO",
            "pricing_model": "per_unit",
            "price": 144000,
            "currency_code": "USD",
            "period": 1,
            "period_unit": "year",
        }
    )
    cb.ItemPrice.create(
        {
            "id": "IMPL-USD",
            "name": "Impl USD",
            "item_id": "IMPL",
            "pricing_model": "per_unit",
            "price": 500000,
            "currency_code": "USD",
        }
    )


def _subscribe(cb: Chargebee, start: int, **extra: Any) -> Any:
    params: dict[str, Any] = {
        "id": "sub-1",
        "subscription_items": [
            {"item_price_id": "PRO-USD-Yearly", "quantity": 50, "unit_price": 129600},
            {"item_price_id": "IMPL-USD", "quantity": 1},
        ],
        "start_date": start,
        "billing_cycles": 2,
        "net_term_days": 30,
        "auto_collection": "off",
        **extra,
    }
    return cb.Subscription.create_with_items("acme", params)


def _advance(url: str, seconds: float) -> None:
    httpx.post(f"{url}/_sandbox/clock", json={"advance_s": seconds}).raise_for_status()


def _now(url: str) -> int:
    return int(httpx.get(f"{url}/_sandbox/clock").json()["now"])


def test_customer_is_created_read_back_and_its_id_is_unique(cb: Chargebee) -> None:
    created = _customer(cb, meta_data=json.dumps({"deal_id": "deal-1"}))
    read = cb.Customer.retrieve("acme").customer
    assert (read.id, read.company, read.meta_data) == (
        "acme",
        created.company,
        {"deal_id": "deal-1"},
    )
    assert read.billing_address.city == "Austin"
    with pytest.raises(chargebee.InvalidRequestError) as dup:
        _customer(cb)
    assert (dup.value.http_status_code, dup.value.api_error_code, dup.value.param) == (
        400,
        "duplicate_entry",
        "id",
    )


def test_errors_carry_chargebees_body(cb: Chargebee, url: str) -> None:
    with pytest.raises(chargebee.InvalidRequestError) as missing:
        cb.Customer.retrieve("nobody")
    assert (missing.value.http_status_code, missing.value.api_error_code) == (
        404,
        "resource_not_found",
    )
    with pytest.raises(chargebee.InvalidRequestError) as bad_email:
        _customer(cb, email="not-an-email")
    assert (bad_email.value.api_error_code, bad_email.value.param) == ("param_wrong_value", "email")
    with pytest.raises(chargebee.InvalidRequestError) as bad_enum:
        _customer(cb, auto_collection="sometimes")
    assert bad_enum.value.param == "auto_collection"
    with pytest.raises(chargebee.InvalidRequestError) as unknown:
        cb.Customer.create({"id": "x", "favourite_colour": "red"})
    assert unknown.value.param == "favourite_colour"
    # meta_data is a JSON document; a Python repr (what the SDK sends for a dict) is refused.
    with pytest.raises(chargebee.InvalidRequestError) as repr_meta:
        cb.Customer.create({"id": "x", "meta_data": {"deal_id": "d"}})
    assert repr_meta.value.param == "meta_data"
    bad_key = chargebee_client(api_key="wrong", site=SITE, api_base=url)
    with pytest.raises(chargebee.APIError) as auth:
        bad_key.Customer.retrieve("acme")
    assert (auth.value.http_status_code, auth.value.api_error_code, auth.value.type) == (
        401,
        "api_authentication_failed",
        None,
    )


def test_a_create_repeated_with_its_key_is_replayed_within_30_minutes(
    cb: Chargebee, url: str
) -> None:
    params: dict[str, Any] = {"email": "ap@acme.example", "company": "Acme"}
    first = cb.Customer.create(params, _key("qtc:deal-1:customer"))
    again = cb.Customer.create(params, _key("qtc:deal-1:customer"))
    assert not first.is_idempotency_replayed
    assert again.is_idempotency_replayed
    assert again.customer.id == first.customer.id
    with pytest.raises(chargebee.InvalidRequestError) as other:
        cb.Customer.create({"email": "other@acme.example"}, _key("qtc:deal-1:customer"))
    assert other.value.api_error_code == "invalid_request"
    with pytest.raises(chargebee.InvalidRequestError) as long_key:
        cb.Customer.create(params, _key("k" * 101))
    assert long_key.value.param == "chargebee-idempotency-key"
    _advance(url, 31 * 60)
    later = cb.Customer.create(params, _key("qtc:deal-1:customer"))
    assert not later.is_idempotency_replayed
    assert later.customer.id != first.customer.id
    received = httpx.get(f"{url}/_sandbox/requests").json()["requests"]
    assert [r["replayed"] for r in received if r["path"] == "/api/v2/customers"] == [
        False,
        True,
        False,
        False,
        False,
    ]


def test_lists_filter_and_page_with_offsets(cb: Chargebee) -> None:
    for i in range(5):
        _customer(cb, f"c{i}", email=f"ap{i % 2}@acme.example")
    seen: list[str] = []
    offset: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, "sort_by": {"asc": "created_at"}}
        if offset:
            params["offset"] = offset
        page = cb.Customer.list(params)
        seen += [row.customer.id for row in page.list]
        offset = page.next_offset
        if offset is None:
            break
    assert sorted(seen) == [f"c{i}" for i in range(5)]
    assert len(seen) == 5
    filtered = cb.Customer.list({"email": {"is": "ap1@acme.example"}, "limit": 100})
    assert sorted(row.customer.id for row in filtered.list) == ["c1", "c3"]
    either = cb.Customer.list({"id": {"in": ["c0", "c4", "nobody"]}})
    assert sorted(row.customer.id for row in either.list) == ["c0", "c4"]
    with pytest.raises(chargebee.InvalidRequestError) as too_many:
        cb.Customer.list({"limit": 101})
    assert too_many.value.param == "limit"


def test_a_subscription_bills_its_items_at_the_overridden_prices(cb: Chargebee, url: str) -> None:
    _customer(cb)
    _catalog(cb)
    created = _subscribe(cb, _now(url) - 60, first_invoice_pending=True)
    assert created.subscription.status == "active"
    invoice = created.invoice
    assert invoice.status == "pending"
    assert invoice.total == 50 * 129600 + 500000
    lines = sorted(
        (li.entity_id, li.quantity, li.unit_amount, li.amount) for li in invoice.line_items
    )
    assert lines == [("IMPL-USD", 1, 500000, 500000), ("PRO-USD-Yearly", 50, 129600, 6480000)]
    assert invoice.due_date - invoice.date == 30 * 86400
    with pytest.raises(chargebee.InvalidRequestError) as not_closed:
        cb.Invoice.send_email(invoice.id)
    assert not_closed.value.api_error_code == "invalid_state_for_request"
    assert cb.Invoice.close(invoice.id).invoice.status == "payment_due"
    with pytest.raises(chargebee.InvalidRequestError):
        cb.Invoice.close(invoice.id)
    sent = cb.Invoice.send_email(invoice.id).email_logs
    assert [log.to_address for log in sent] == ["ap@acme.example"]
    logs = cb.EmailLog.email_logs_for_customer("acme").list
    assert [row.email_log.subject for row in logs] == [f"Invoice #{invoice.id}"]
    assert httpx.get(f"{url}/_sandbox/emails").json()["emails"][0]["invoice_id"] == invoice.id


def test_a_future_subscription_starts_renews_at_its_ramp_prices_and_ends(
    cb: Chargebee, url: str
) -> None:
    _customer(cb)
    _catalog(cb)
    start = _now(url) + 86400
    created = _subscribe(cb, start)
    assert created.subscription.status == "future"
    assert created.invoice is None
    ramp = cb.Ramp.create_for_subscription(
        "sub-1",
        {
            "effective_from": start + YEAR_S - 86400,
            "items_to_update": [{"item_price_id": "PRO-USD-Yearly", "unit_price": 138672}],
        },
    ).ramp
    assert ramp.status == "scheduled"
    with pytest.raises(chargebee.InvalidRequestError) as past:
        cb.Ramp.create_for_subscription(
            "sub-1",
            {
                "effective_from": _now(url) - 1,
                "items_to_update": [{"item_price_id": "PRO-USD-Yearly", "unit_price": 1}],
            },
        )
    assert past.value.param == "effective_from"
    _advance(url, 2 * 86400)
    invoices = cb.Invoice.list({"subscription_id": {"is": "sub-1"}}).list
    assert [(row.invoice.status, row.invoice.total) for row in invoices] == [
        ("payment_due", 50 * 129600 + 500000)
    ]
    _advance(url, YEAR_S)
    invoices = cb.Invoice.list(
        {"subscription_id": {"is": "sub-1"}, "sort_by": {"asc": "date"}}
    ).list
    assert [row.invoice.total for row in invoices] == [50 * 129600 + 500000, 50 * 138672]
    assert cb.Ramp.retrieve(ramp.id).ramp.status == "succeeded"
    _advance(url, YEAR_S)
    assert cb.Subscription.retrieve("sub-1").subscription.status == "cancelled"
    assert len(cb.Invoice.list({"subscription_id": {"is": "sub-1"}}).list) == 2
    ramps = cb.Ramp.list({"subscription_id": {"is": "sub-1"}}).list
    assert [row.ramp.id for row in ramps] == [ramp.id]


def test_a_one_off_invoice_takes_charge_items_only(cb: Chargebee, url: str) -> None:
    _customer(cb)
    _catalog(cb)
    now = _now(url)
    invoice = cb.Invoice.create_for_charge_items_and_charges(
        {
            "customer_id": "acme",
            "currency_code": "USD",
            "item_prices": [
                {
                    "item_price_id": "IMPL-USD",
                    "quantity": 2,
                    "unit_price": 1234,
                    "date_from": now,
                    "date_to": now + 86400,
                }
            ],
            "net_term_days": 15,
            "create_pending_invoice": True,
        },
        _key("one-off"),
    ).invoice
    assert (invoice.status, invoice.total, invoice.subscription_id) == ("pending", 2468, None)
    assert invoice.line_items[0].date_to - invoice.line_items[0].date_from == 86400
    with pytest.raises(chargebee.InvalidRequestError) as plan:
        cb.Invoice.create_for_charge_items_and_charges(
            {"customer_id": "acme", "item_prices": [{"item_price_id": "PRO-USD-Yearly"}]}
        )
    assert plan.value.param == "item_prices[item_price_id][0]"
    pending = cb.Invoice.list({"customer_id": {"is": "acme"}, "status": {"in": ["pending"]}})
    assert [row.invoice.id for row in pending.list] == [invoice.id]


def test_injected_faults_answer_like_chargebee(cb: Chargebee, url: str) -> None:
    httpx.post(
        f"{url}/_sandbox/faults",
        json={"rules": [{"path": "/customers", "rate_429": 1.0, "retry_after_s": 7}]},
    ).raise_for_status()
    with pytest.raises(chargebee.APIError) as limited:
        _customer(cb)
    assert (limited.value.http_status_code, limited.value.api_error_code) == (
        429,
        "api_request_limit_exceeded",
    )
    assert limited.value.http_headers["retry-after"] == "7"
    httpx.post(
        f"{url}/_sandbox/faults", json={"rules": [{"path": "/customers", "rate_500": 1.0}]}
    ).raise_for_status()
    with pytest.raises(chargebee.APIError) as broken:
        _customer(cb)
    assert broken.value.http_status_code == 500
    httpx.post(f"{url}/_sandbox/faults", json={"rules": []}).raise_for_status()
    assert _customer(cb).id == "acme"


def test_state_survives_a_restart(tmp_path: Any) -> None:
    state = tmp_path / "chargebee.json"
    with serve_chargebee_emulator(state) as first:
        _customer(chargebee_client(api_key=API_KEY, site=SITE, api_base=first))
    with serve_chargebee_emulator(state) as second:
        client = chargebee_client(api_key=API_KEY, site=SITE, api_base=second)
        assert client.Customer.retrieve("acme").customer.company == "Acme Robotics, Inc."
