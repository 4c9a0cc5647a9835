"""The billing activities against the Chargebee emulator, through the official SDK over HTTP."""

from __future__ import annotations

import itertools
import json
import socket
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from chargebee import Chargebee
from pydantic import SecretStr, ValidationError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from integrations.chargebee import mapping
from integrations.chargebee.activities import ChargebeeBilling, chargebee_failures
from integrations.chargebee.client import build_chargebee_client, chargebee_client
from qtc import errors
from qtc.dates import add_months
from qtc.deal import deal_id_for
from qtc.models import PricedQuote
from qtc.ports import (
    CreateCustomerInput,
    CreateSubscriptionInput,
    InvoiceSent,
    PreviewTaxInput,
    SendAmendmentInvoiceInput,
    SendInvoiceInput,
    SubscriptionCreated,
)
from runtime.settings import ApiPrincipal, Settings
from sandbox.chargebee.testing import API_KEY, SITE, serve_chargebee_emulator
from tests.activities.billing_deals import days_ago, design_example, priced, stub_deal

_opportunities = itertools.count(1)
DAY_S = 86400


@pytest.fixture(scope="module")
def emulator_url() -> Iterator[str]:
    with serve_chargebee_emulator() as url:
        yield url


@pytest.fixture
def site(emulator_url: str) -> Iterator[httpx.Client]:
    """The emulator's control plane, reset for this test (state, faults, clock)."""
    with httpx.Client(base_url=emulator_url) as control:
        control.post("/_sandbox/reset").raise_for_status()
        yield control


@pytest.fixture
def cb(emulator_url: str, site: httpx.Client) -> Chargebee:
    return chargebee_client(api_key=API_KEY, site=SITE, api_base=emulator_url)


@pytest.fixture
def billing(cb: Chargebee) -> ChargebeeBilling:
    return ChargebeeBilling(cb)


def fresh(quote: PricedQuote) -> PricedQuote:
    return quote.model_copy(update={"opportunity_id": f"006CB{next(_opportunities):013d}"})


def run_billing(
    billing: ChargebeeBilling, quote: PricedQuote
) -> tuple[str, SubscriptionCreated, InvoiceSent]:
    env = ActivityEnvironment()
    deal_id = deal_id_for(quote.opportunity_id)
    customer = env.run(
        billing.create_billing_customer, CreateCustomerInput(deal_id=deal_id, priced=quote)
    )
    created = env.run(
        billing.create_subscription,
        CreateSubscriptionInput(deal_id=deal_id, customer_id=customer.customer_id, priced=quote),
    )
    sent = env.run(
        billing.send_first_invoice,
        SendInvoiceInput(
            deal_id=deal_id,
            customer_id=customer.customer_id,
            subscription_id=created.subscription_id,
            priced=quote,
        ),
    )
    return customer.customer_id, created, sent


def invoice_lines(cb: Chargebee, invoice_id: str) -> list[tuple[str, int, int, int]]:
    invoice = cb.Invoice.retrieve(invoice_id).invoice
    return sorted(
        (line.entity_id, line.quantity, line.unit_amount, line.amount)
        for line in invoice.line_items
    )


def quoted_lines(quote: PricedQuote, index: int) -> list[tuple[str, int, int, int]]:
    """The quoted invoice's lines keyed as Chargebee bills them (by item price)."""
    recurring = {
        line.sku: mapping.catalog_entry(quote, line, role).item_price_id
        for line, role in mapping.recurring_roles(quote)
    }
    extra = {e.sku: e.item_price_id for e in mapping.catalog_entries(quote) if e.role == "stub"}
    extra |= {e.sku: e.item_price_id for e in mapping.catalog_entries(quote) if e.role == "charge"}
    return sorted(
        (
            recurring[line.sku] if line.kind == "recurring" else extra[line.sku],
            line.quantity,
            line.unit_amount_minor,
            line.amount_minor,
        )
        for line in quote.invoices[index].lines
    )


def stats(site: httpx.Client) -> dict[str, Any]:
    result: dict[str, Any] = site.get("/_sandbox/stats").json()
    return result


def subscription_invoices(cb: Chargebee, subscription_id: str) -> list[Any]:
    rows = cb.Invoice.list(
        {"subscription_id": {"is": subscription_id}, "sort_by": {"asc": "date"}, "limit": 100}
    ).list
    return [row.invoice for row in rows]


def advance(site: httpx.Client, seconds: float) -> None:
    site.post("/_sandbox/clock", json={"advance_s": seconds}).raise_for_status()


def failure(fn: Any, *args: Any) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        ActivityEnvironment().run(fn, *args)
    return caught.value


# --- the quoted money, to the cent ---------------------------------------------------------------


def test_a_36_month_annual_deal_bills_each_contract_year_at_its_uplifted_unit_price(
    billing: ChargebeeBilling, cb: Chargebee, site: httpx.Client
) -> None:
    quote = fresh(design_example(days_ago(0)))
    assert quote.lines[0].unit_amounts_by_year_minor == [129600, 138672, 148379]
    customer_id, created, sent = run_billing(billing, quote)

    assert (sent.total_minor, sent.status) == (6980000, "payment_due")
    assert sent.total_minor == quote.first_invoice_total_minor
    assert invoice_lines(cb, sent.invoice_id) == [
        ("qtc-IMPL-SERVICES-USD", 1, 500000, 500000),
        ("qtc-PLATFORM-PRO-USD-1-year", 50, 129600, 6480000),
    ]
    assert invoice_lines(cb, sent.invoice_id) == quoted_lines(quote, 0)
    subscription = cb.Subscription.retrieve(created.subscription_id).subscription
    assert (subscription.net_term_days, subscription.auto_collection) == (30, "off")
    assert (subscription.billing_period, subscription.billing_period_unit) == (1, "year")
    assert subscription.start_date == mapping.utc_midnight(quote.term_start)
    invoice = cb.Invoice.retrieve(sent.invoice_id).invoice
    assert invoice.due_date - invoice.date == 30 * DAY_S
    emails = site.get("/_sandbox/emails").json()["emails"]
    assert [(e["invoice_id"], e["to_address"]) for e in emails] == [
        (sent.invoice_id, "ap@acme.example")
    ]
    ramps = cb.Ramp.list({"subscription_id": {"is": created.subscription_id}}).list
    assert sorted(r.ramp.effective_from for r in ramps) == [
        mapping.utc_midnight(start) for start in mapping.contract_year_starts(quote)[1:]
    ]

    # Years 2 and 3 renew at u_2 and u_3 (the ramps), and the term ends after three periods.
    for _ in range(3):
        advance(site, 366 * DAY_S)
    invoices = subscription_invoices(cb, created.subscription_id)
    assert [i.total for i in invoices] == [inv.total_minor for inv in quote.invoices]
    assert [invoice_lines(cb, i.id) for i in invoices[1:]] == [
        quoted_lines(quote, 1),
        quoted_lines(quote, 2),
    ]
    assert cb.Subscription.retrieve(created.subscription_id).subscription.status == "cancelled"
    assert sum(i.total for i in invoices) == quote.tcv_minor
    assert customer_id == mapping.customer_id_for(deal_id_for(quote.opportunity_id))


def test_a_monthly_first_of_month_deal_bills_the_stub_and_one_time_lines_first(
    billing: ChargebeeBilling, cb: Chargebee, site: httpx.Client
) -> None:
    quote = fresh(stub_deal(days_ago(0, avoid_first=True)))
    assert mapping.has_stub(quote)
    kinds = sorted(line.kind for line in quote.invoices[0].lines)
    assert kinds == ["one_time", "stub", "stub"]
    customer_id, created, sent = run_billing(billing, quote)

    assert sent.invoice_id == created.invoice_id
    assert sent.total_minor == quote.invoices[0].total_minor
    assert invoice_lines(cb, sent.invoice_id) == quoted_lines(quote, 0)
    first = cb.Invoice.retrieve(sent.invoice_id).invoice
    assert (first.currency_code, first.net_term_days, first.status) == ("EUR", 15, "payment_due")
    assert first.date == mapping.utc_midnight(quote.start_date)
    stub_line = next(li for li in first.line_items if li.entity_id.endswith("-stub-EUR"))
    assert stub_line.date_to == mapping.utc_midnight(quote.term_start)
    subscription = cb.Subscription.retrieve(created.subscription_id).subscription
    assert subscription.status == "future"
    assert subscription.start_date == mapping.utc_midnight(quote.term_start)

    # At the anchor the subscription starts and bills the first full month: plan and addon.
    advance(site, 32 * DAY_S)
    invoices = subscription_invoices(cb, created.subscription_id)
    assert [invoice_lines(cb, i.id) for i in invoices[:1]] == [quoted_lines(quote, 1)]
    assert invoices[0].total == quote.invoices[1].total_minor
    assert len(site.get("/_sandbox/emails").json()["emails"]) == 1
    assert customer_id == created.subscription_id


# --- once, whatever happens ----------------------------------------------------------------------


def test_every_step_run_twice_makes_one_customer_one_subscription_and_one_email(
    billing: ChargebeeBilling, cb: Chargebee, site: httpx.Client
) -> None:
    quote = fresh(design_example(days_ago(0)))
    first = run_billing(billing, quote)
    again = run_billing(billing, quote)
    assert again == first
    counts = stats(site)
    assert (counts["customers"], counts["subscriptions"], counts["ramps"], counts["emails"]) == (
        1,
        1,
        2,
        1,
    )
    received = site.get("/_sandbox/requests").json()["requests"]
    creates = [r for r in received if r["method"] == "POST"]
    assert all(r["idempotency_key"] and r["idempotency_key"].startswith("qtc:") for r in creates)


def test_after_chargebee_forgot_the_keys_the_steps_find_what_they_made(
    cb: Chargebee, site: httpx.Client
) -> None:
    quote = fresh(stub_deal(days_ago(0, avoid_first=True)))
    first = run_billing(ChargebeeBilling(cb), quote)
    advance(site, 31 * 60)  # Chargebee keeps idempotency keys for 30 minutes
    # A new worker process: nothing cached either.
    again = run_billing(ChargebeeBilling(cb), quote)
    assert again == first
    counts = stats(site)
    assert (counts["customers"], counts["subscriptions"], counts["invoices"], counts["emails"]) == (
        1,
        1,
        1,
        1,
    )


def test_an_invoice_that_differs_from_the_quote_is_held_and_shows_both_sides(
    billing: ChargebeeBilling, cb: Chargebee, site: httpx.Client
) -> None:
    quote = fresh(design_example(days_ago(0)))
    env = ActivityEnvironment()
    deal_id = deal_id_for(quote.opportunity_id)
    customer = env.run(
        billing.create_billing_customer, CreateCustomerInput(deal_id=deal_id, priced=quote)
    )
    created = env.run(
        billing.create_subscription,
        CreateSubscriptionInput(deal_id=deal_id, customer_id=customer.customer_id, priced=quote),
    )
    signed = quote.model_copy(
        update={
            "invoices": [
                quote.invoices[0].model_copy(update={"total_minor": 6980001}),
                *quote.invoices[1:],
            ]
        }
    )
    error = failure(
        billing.send_first_invoice,
        SendInvoiceInput(
            deal_id=deal_id,
            customer_id=customer.customer_id,
            subscription_id=created.subscription_id,
            priced=signed,
        ),
    )
    assert (error.type, error.non_retryable) == (errors.INVOICE_MISMATCH, True)
    details = error.details[0]
    assert details["total_minor"] == {"expected": 6980001, "actual": 6980000}
    assert len(details["expected_lines"]) == len(details["actual_lines"]) == 2
    assert cb.Invoice.retrieve(created.invoice_id or "").invoice.status == "pending"
    assert stats(site)["emails"] == 0


def test_a_voided_first_invoice_parks_the_deal(
    billing: ChargebeeBilling, cb: Chargebee, site: httpx.Client
) -> None:
    quote = fresh(design_example(days_ago(0)))
    env = ActivityEnvironment()
    deal_id = deal_id_for(quote.opportunity_id)
    customer = env.run(
        billing.create_billing_customer, CreateCustomerInput(deal_id=deal_id, priced=quote)
    )
    created = env.run(
        billing.create_subscription,
        CreateSubscriptionInput(deal_id=deal_id, customer_id=customer.customer_id, priced=quote),
    )
    cb.Invoice.void_invoice(created.invoice_id or "")
    error = failure(
        billing.send_first_invoice,
        SendInvoiceInput(
            deal_id=deal_id,
            customer_id=customer.customer_id,
            subscription_id=created.subscription_id,
            priced=quote,
        ),
    )
    assert (error.type, error.non_retryable) == (errors.VENDOR_CONFLICT, True)
    assert stats(site)["emails"] == 0


# --- Chargebee's refusals and troubles -----------------------------------------------------------


def test_a_rate_limited_chargebee_is_retried_after_its_retry_after(
    billing: ChargebeeBilling, site: httpx.Client
) -> None:
    site.post(
        "/_sandbox/faults",
        json={"rules": [{"path": "/customers", "rate_429": 1.0, "retry_after_s": 7}]},
    ).raise_for_status()
    quote = fresh(design_example(days_ago(0)))
    error = failure(
        billing.create_billing_customer,
        CreateCustomerInput(deal_id=deal_id_for(quote.opportunity_id), priced=quote),
    )
    assert (error.type, error.non_retryable) == (errors.VENDOR_RATE_LIMITED, False)
    assert error.next_retry_delay == timedelta(seconds=7)


def test_a_failing_chargebee_is_retried(billing: ChargebeeBilling, site: httpx.Client) -> None:
    site.post(
        "/_sandbox/faults", json={"rules": [{"path": "/customers", "rate_500": 1.0}]}
    ).raise_for_status()
    quote = fresh(design_example(days_ago(0)))
    error = failure(
        billing.create_billing_customer,
        CreateCustomerInput(deal_id=deal_id_for(quote.opportunity_id), priced=quote),
    )
    assert (error.type, error.non_retryable) == (errors.VENDOR_UNAVAILABLE, False)
    assert error.details[0]["code"] == "internal_error"


def test_an_invalid_api_key_fails_the_step_for_good(emulator_url: str, site: httpx.Client) -> None:
    billing = ChargebeeBilling(chargebee_client(api_key="wrong", site=SITE, api_base=emulator_url))
    quote = fresh(design_example(days_ago(0)))
    error = failure(
        billing.create_billing_customer,
        CreateCustomerInput(deal_id=deal_id_for(quote.opportunity_id), priced=quote),
    )
    assert (error.type, error.non_retryable) == (errors.VENDOR_AUTHENTICATION, True)


def test_subscribing_a_customer_chargebee_does_not_know_is_not_retried(
    billing: ChargebeeBilling, site: httpx.Client
) -> None:
    quote = fresh(design_example(days_ago(0)))
    error = failure(
        billing.create_subscription,
        CreateSubscriptionInput(
            deal_id=deal_id_for(quote.opportunity_id), customer_id="nobody", priced=quote
        ),
    )
    assert (error.type, error.non_retryable) == (errors.VENDOR_NOT_FOUND, True)


def test_an_unreachable_chargebee_is_retried() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    billing = ChargebeeBilling(
        chargebee_client(api_key=API_KEY, site=SITE, api_base=f"http://127.0.0.1:{port}")
    )
    quote = fresh(design_example(days_ago(0)))
    error = failure(
        billing.create_billing_customer,
        CreateCustomerInput(deal_id=deal_id_for(quote.opportunity_id), priced=quote),
    )
    assert (error.type, error.non_retryable) == (errors.VENDOR_UNAVAILABLE, False)


def test_a_reply_that_is_not_chargebees_json_is_retried() -> None:
    with pytest.raises(ApplicationError) as caught, chargebee_failures():
        raise Exception(
            "Sorry, the server is currently unable to handle the request. \n"
            " http_status_code: 503, \n content: <html>"
        )
    assert (caught.value.type, caught.value.non_retryable) == (errors.VENDOR_UNAVAILABLE, False)
    with pytest.raises(KeyError), chargebee_failures():
        raise KeyError("a bug of ours stays a bug")


def test_ids_stay_within_chargebees_limits_and_distinct() -> None:
    short = mapping.customer_id_for("deal-006000000000001AAA")
    assert short == "qtc-deal-006000000000001AAA"
    long_a = mapping.customer_id_for("deal-" + "x" * 80 + "a")
    long_b = mapping.customer_id_for("deal-" + "x" * 80 + "b")
    assert len(long_a) <= 50 and len(long_b) <= 50 and long_a != long_b
    assert mapping.customer_id_for("deal-a/b") != mapping.customer_id_for("deal-a_b")


def test_the_sdk_sends_on_the_process_pooled_connections(cb: Chargebee) -> None:
    from chargebee import http_request

    from integrations.chargebee import client

    assert http_request._make_request is client._pooled_request
    assert client._pool is not None
    cb.ItemFamily.create({"id": "pooled", "name": "Pooled"})
    assert cb.ItemFamily.retrieve("pooled").item_family.name == "Pooled"


# --- the mapping alone ---------------------------------------------------------------------------


def test_each_later_contract_year_is_one_ramp_at_that_years_unit_prices() -> None:
    quote = priced(
        days_ago(0),
        currency="eur",
        term_months=24,
        billing_frequency="quarterly",
        lines=[
            {"sku": "PLATFORM-PRO", "quantity": 20, "discount_percent": "5"},
            {"sku": "SUPPORT-PREMIUM", "quantity": 1},
        ],
    )
    params = mapping.subscription_params("deal-x", quote)
    assert params["billing_cycles"] == 8
    assert params["first_invoice_pending"] is True
    assert json.loads(params["meta_data"])["deal_id"] == "deal-x"
    recurring = [line for line in quote.lines if line.kind == "recurring"]
    assert [i["unit_price"] for i in params["subscription_items"][:2]] == [
        line.unit_amounts_by_year_minor[0] for line in recurring if line.unit_amounts_by_year_minor
    ]
    assert [i["item_price_id"] for i in params["subscription_items"][:2]] == [
        "qtc-PLATFORM-PRO-EUR-3-month",
        "qtc-SUPPORT-PREMIUM-addon-EUR-3-month",
    ]
    (ramp,) = mapping.ramps(quote)
    assert ramp.contract_year == 2
    assert ramp.effective_from == mapping.utc_midnight(add_months(quote.term_start, 12))
    assert [u["unit_price"] for u in ramp.params["items_to_update"]] == [
        line.unit_amounts_by_year_minor[1] for line in recurring if line.unit_amounts_by_year_minor
    ]


def test_a_quote_without_a_recurring_line_is_not_subscribed() -> None:
    quote = design_example(days_ago(0))
    one_time_only = quote.model_copy(
        update={"lines": [line for line in quote.lines if line.kind == "one_time"]}
    )
    with pytest.raises(mapping.UnbillableQuote):
        mapping.subscription_params("deal-x", one_time_only)


def test_only_an_eu_vat_id_becomes_chargebees_vat_number() -> None:
    eu = mapping.customer_params("deal-x", stub_deal(days_ago(0, avoid_first=True)))
    us = mapping.customer_params("deal-y", design_example(days_ago(0)))
    assert eu["vat_number"] == "DE123456789"
    assert "vat_number" not in us
    assert json.loads(us["meta_data"])["tax_id"] == "12-3456789"
    assert (us["auto_collection"], us["net_term_days"], us["preferred_currency_code"]) == (
        "off",
        30,
        "USD",
    )


# --- settings ------------------------------------------------------------------------------------


def _production(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "_env_file": None,
        "env": "production",
        "codec_enabled": False,
        "docusign_connect_secret": SecretStr("a-real-connect-secret"),
        "salesforce_callout_secret": SecretStr("a-real-sf-secret"),
        "provisioning_secret": SecretStr("a-real-provisioning-secret"),
        "api_tokens": {"t-1": ApiPrincipal(person="p@example.com", role="operator")},
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


def test_production_refuses_the_sandbox_key_of_the_billing_system_it_uses_only() -> None:
    stripe_site = _production(stripe_api_key=SecretStr("sk_live_real"))
    assert stripe_site.billing == "stripe"
    chargebee_site = _production(
        billing="chargebee", chargebee_site="acme", chargebee_api_key=SecretStr("live_real")
    )
    assert chargebee_site.chargebee_site == "acme"
    with pytest.raises(ValidationError, match="QTC_CHARGEBEE_API_KEY"):
        _production(billing="chargebee", stripe_api_key=SecretStr("sk_live_real"))


def test_the_client_from_settings_reaches_the_configured_site(emulator_url: str) -> None:
    client = build_chargebee_client(Settings(_env_file=None, chargebee_api_base=emulator_url))
    assert client.env.api_endpoint == f"{emulator_url}/api/v2"
    real = build_chargebee_client(
        _production(
            billing="chargebee",
            chargebee_site="acme-test",
            chargebee_api_key=SecretStr("live_real"),
            chargebee_api_base="",
        )
    )
    assert real.env.api_endpoint == "https://acme-test.chargebee.com/api/v2"


def test_idempotency_keys_fit_chargebees_100_characters_and_stay_distinct() -> None:
    from integrations.chargebee.activities import KEY_HEADER, _key

    short = _key("deal-006000000000001AAA", "customer")[KEY_HEADER]
    assert short == "qtc:deal-006000000000001AAA:customer"
    long_a = _key("deal-" + "9" * 60, "item-price:" + "x" * 50)[KEY_HEADER]
    long_b = _key("deal-" + "9" * 60, "item-price:" + "x" * 49 + "y")[KEY_HEADER]
    assert len(long_a) == len(long_b) == 100
    assert long_a != long_b


# --- services orders, tax, amendments -------------------------------------------------------------


def test_a_services_order_is_one_sent_invoice_without_a_subscription(
    billing: ChargebeeBilling, cb: Chargebee, site: httpx.Client
) -> None:
    quote = fresh(priced(days_ago(0), lines=[{"sku": "IMPL-SERVICES", "quantity": 2}]))
    assert mapping.is_services_order(quote)
    env = ActivityEnvironment()
    deal_id = deal_id_for(quote.opportunity_id)
    customer = env.run(
        billing.create_billing_customer, CreateCustomerInput(deal_id=deal_id, priced=quote)
    )
    send = SendInvoiceInput(deal_id=deal_id, customer_id=customer.customer_id, priced=quote)
    sent = env.run(billing.send_first_invoice, send)
    again = env.run(billing.send_first_invoice, send)

    assert again == sent
    assert (sent.total_minor, sent.tax_minor, sent.status) == (
        quote.invoices[0].total_minor,
        0,
        "payment_due",
    )
    assert invoice_lines(cb, sent.invoice_id) == quoted_lines(quote, 0)
    counts = stats(site)
    assert (counts["subscriptions"], counts["invoices"], counts["emails"]) == (0, 1, 1)


def test_the_tax_preview_adds_no_tax_to_the_net_invoice(billing: ChargebeeBilling) -> None:
    quote = fresh(design_example(days_ago(0)))
    preview = ActivityEnvironment().run(
        billing.preview_invoice_tax,
        PreviewTaxInput(deal_id="deal-x", customer_id="qtc-deal-x", priced=quote),
    )
    assert (preview.tax_minor, preview.total_minor) == (0, quote.invoices[0].total_minor)


def test_an_amendment_on_chargebee_parks_for_an_operator_and_changes_nothing(
    billing: ChargebeeBilling, site: httpx.Client
) -> None:
    quote = fresh(design_example(days_ago(0)))
    error = failure(
        billing.send_amendment_invoice,
        SendAmendmentInvoiceInput(
            deal_id="deal-amendment", original_deal_id="deal-x", customer_id="c", priced=quote
        ),
    )
    assert (error.type, error.non_retryable) == (errors.VENDOR_INVALID_REQUEST, True)
    assert "by hand" in error.message
    assert stats(site)["requests"] == {}
