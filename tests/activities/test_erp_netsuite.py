"""The ERP port on NetSuite, against the NetSuite emulator through the adapter's own client."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from integrations.netsuite.activities import NetSuiteErp
from integrations.netsuite.client import (
    NetSuiteClient,
    TbaCredentials,
    build_netsuite_http,
    netsuite_base_url,
    netsuite_credentials,
)
from qtc import errors
from qtc.catalog import load_catalog
from qtc.cpq import price_quote
from qtc.models import PricedQuote
from qtc.ports import ErpInvoiceSynced, SyncErpInvoiceInput
from runtime.settings import SANDBOX_SECRETS, Settings
from sandbox.netsuite.app import SANDBOX_CREDENTIALS, create_app
from sandbox.stripe.testing import serve_app
from tests.unit.builders import quote_dict

CATALOG = Path(__file__).parents[2] / "catalog.toml"
SIGNED = datetime(2026, 12, 15, 10, 0, tzinfo=UTC)


def credentials(token_secret: str = SANDBOX_CREDENTIALS.token_secret) -> TbaCredentials:
    return TbaCredentials(
        account=SANDBOX_CREDENTIALS.account,
        consumer_key=SANDBOX_CREDENTIALS.consumer_key,
        consumer_secret=SecretStr(SANDBOX_CREDENTIALS.consumer_secret),
        token_id=SANDBOX_CREDENTIALS.token_id,
        token_secret=SecretStr(token_secret),
    )


@pytest.fixture(scope="session")
def emulator_url() -> Iterator[str]:
    with serve_app(create_app(catalog_path=CATALOG)) as url:
        yield url


@pytest.fixture
def ns_url(emulator_url: str) -> str:
    httpx.post(f"{emulator_url}/_sandbox/reset").raise_for_status()
    return emulator_url


def erp_at(url: str, **creds: str) -> NetSuiteErp:
    http = build_netsuite_http(f"{url}/services/rest", credentials(**creds), 10)
    return NetSuiteErp(NetSuiteClient(http), subsidiary_id="1")


@pytest.fixture
def erp(ns_url: str) -> NetSuiteErp:
    return erp_at(ns_url)


def priced(**overrides: Any) -> PricedQuote:
    """The documented quote: 36 months annual, 50 PLATFORM-PRO at 10% off (+ IMPL-SERVICES)."""
    return price_quote(quote_dict(**overrides), load_catalog(CATALOG), SIGNED)


def sync_input(quote: PricedQuote, invoice_id: str = "in_T1") -> SyncErpInvoiceInput:
    return SyncErpInvoiceInput(
        deal_id=f"deal-{quote.opportunity_id}",
        billing_customer_id="cus_T1",
        billing_invoice_id=invoice_id,
        billing_invoice_number="ACME-0001",
        billed_total_minor=quote.invoices[0].total_minor,
        priced=quote,
        invoice=quote.invoices[0],
    )


def sync(erp: NetSuiteErp, input: SyncErpInvoiceInput) -> ErpInvoiceSynced:
    result: ErpInvoiceSynced = ActivityEnvironment().run(erp.sync_erp_invoice, input)
    return result


def records(url: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{url}/_sandbox/records").json()
    return body


def failure(erp: NetSuiteErp, input: SyncErpInvoiceInput) -> ApplicationError:
    with pytest.raises(ApplicationError) as raised:
        sync(erp, input)
    return raised.value


def test_the_first_invoice_is_recorded_line_by_line_with_its_revenue_dates(
    erp: NetSuiteErp, ns_url: str
) -> None:
    quote = priced()

    result = sync(erp, sync_input(quote))

    held = records(ns_url)
    [customer], [invoice] = held["customer"], held["invoice"]
    assert (result.customer_id, result.invoice_id) == (customer["id"], invoice["id"])
    assert result.system == "netsuite"
    assert result.invoice_number == invoice["tranId"]
    assert customer["externalId"] == "qtc-cus_T1"
    assert (customer["companyName"], customer["email"]) == (
        "Acme Robotics, Inc.",
        "ap@acme.example",
    )
    assert invoice["externalId"] == "qtc-in_T1"
    assert (invoice["entity"]["id"], invoice["currency"]["refName"]) == (customer["id"], "USD")
    assert (invoice["tranDate"], invoice["dueDate"]) == ("2026-12-15", "2027-01-14")
    assert invoice["memo"] == "ACME-0001"
    lines = [
        (
            line["item"]["refName"],
            line["quantity"],
            line["rate"],
            line["amount"],
            line["revRecStartDate"],
            line["revRecEndDate"],
        )
        for line in invoice["item"]["items"]
    ]
    # The priced first invoice: 50 seats at 1,296.00 for the first contract year, and the
    # implementation services once, on the start date.
    assert lines == [
        ("PLATFORM-PRO", 50, 1296, 64800, "2026-12-15", "2027-12-14"),
        ("IMPL-SERVICES", 1, 5000, 5000, "2026-12-15", "2026-12-15"),
    ]
    assert invoice["total"] * 100 == quote.invoices[0].total_minor == 6980000


def test_running_the_step_again_leaves_one_customer_and_one_invoice(
    erp: NetSuiteErp, ns_url: str
) -> None:
    input = sync_input(priced())

    results = {sync(erp, input).model_dump_json() for _ in range(3)}

    assert len(results) == 1
    held = records(ns_url)
    assert [len(held["customer"]), len(held["invoice"])] == [1, 1]
    assert len(held["invoice"][0]["item"]["items"]) == 2


def test_a_stub_line_is_recognised_over_the_stub_and_the_period_over_the_period(
    erp: NetSuiteErp, ns_url: str
) -> None:
    quote = priced(billing_anchor="first_of_month", billing_frequency="monthly", currency="eur")

    sync(erp, sync_input(quote))

    [invoice] = records(ns_url)["invoice"]
    dates = {
        (line["item"]["refName"], line["revRecStartDate"], line["revRecEndDate"])
        for line in invoice["item"]["items"]
    }
    assert ("PLATFORM-PRO", "2026-12-15", "2026-12-31") in dates
    assert ("IMPL-SERVICES", "2026-12-15", "2026-12-15") in dates
    assert invoice["currency"]["refName"] == "EUR"
    assert round(invoice["total"] * 100) == quote.invoices[0].total_minor
    first = quote.invoices[0].lines[0]
    assert first.period_end == date(2027, 1, 1)


def test_a_sku_without_a_netsuite_item_parks_naming_it_and_a_resume_after_the_fix_records_it(
    erp: NetSuiteErp, ns_url: str
) -> None:
    httpx.delete(f"{ns_url}/_sandbox/items/IMPL-SERVICES").raise_for_status()
    input = sync_input(priced())

    parked = failure(erp, input)

    assert parked.type == errors.VENDOR_INVALID_REQUEST
    assert parked.non_retryable
    assert "IMPL-SERVICES" in parked.message
    assert "PLATFORM-PRO" not in parked.message
    assert records(ns_url)["invoice"] == []
    httpx.put(f"{ns_url}/_sandbox/items/IMPL-SERVICES", json={}).raise_for_status()
    sync(erp, input)
    assert len(records(ns_url)["invoice"]) == 1


def test_a_currency_the_subsidiary_lacks_parks_naming_the_field(
    erp: NetSuiteErp, ns_url: str
) -> None:
    httpx.put(f"{ns_url}/_sandbox/subsidiaries/1", json={"currencies": ["USD"]})

    parked = failure(erp, sync_input(priced(currency="eur")))

    assert parked.type == errors.VENDOR_INVALID_REQUEST
    assert parked.non_retryable
    assert "(field currency)" in parked.message
    assert "EUR" in parked.message


def test_a_netsuite_total_that_differs_from_the_billed_invoice_parks_naming_the_field(
    erp: NetSuiteErp, ns_url: str
) -> None:
    httpx.put(f"{ns_url}/_sandbox/items/IMPL-SERVICES", json={"taxRate": "10"})

    parked = failure(erp, sync_input(priced()))

    assert parked.type == errors.INVOICE_MISMATCH
    assert parked.non_retryable
    assert "total: billed 69800.00, NetSuite 70300" in parked.message


def test_a_billed_total_that_differs_from_the_lines_is_a_mismatch(erp: NetSuiteErp) -> None:
    input = sync_input(priced())
    input.billed_total_minor += 1

    parked = failure(erp, input)

    assert parked.type == errors.INVOICE_MISMATCH
    assert "total" in parked.message


@pytest.mark.parametrize(
    ("fault", "kind"),
    [("rate_429", errors.VENDOR_RATE_LIMITED), ("rate_500", errors.VENDOR_UNAVAILABLE)],
)
def test_a_busy_or_failing_netsuite_is_retried(
    erp: NetSuiteErp, ns_url: str, fault: str, kind: str
) -> None:
    httpx.post(
        f"{ns_url}/_sandbox/faults", json={"rules": [{"path": "invoice", fault: 1}]}
    ).raise_for_status()

    retried = failure(erp, sync_input(priced()))

    assert (retried.type, retried.non_retryable) == (kind, False)


def test_a_wrong_token_secret_is_an_authentication_failure_not_retried(ns_url: str) -> None:
    refused = failure(erp_at(ns_url, token_secret="wrong"), sync_input(priced()))

    assert (refused.type, refused.non_retryable) == (errors.VENDOR_AUTHENTICATION, True)
    assert "answered 401" in refused.message


def test_an_unreachable_netsuite_is_retried() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    unreachable = failure(erp_at(f"http://127.0.0.1:{port}"), sync_input(priced()))

    assert (unreachable.type, unreachable.non_retryable) == (errors.VENDOR_UNAVAILABLE, False)


# --- settings ---------------------------------------------------------------------------------


def test_the_sandbox_talks_to_the_emulator_without_any_netsuite_setting() -> None:
    settings = Settings.model_validate({"env": "sandbox", "sandbox_netsuite_port": 40123})

    assert netsuite_credentials(settings).account == "SANDBOX"
    assert netsuite_base_url(settings, "SANDBOX") == "http://127.0.0.1:40123/services/rest"


def test_production_needs_every_netsuite_setting_and_refuses_the_sandbox_secrets() -> None:
    production: dict[str, Any] = {"env": "production", "codec_enabled": False, "api_tokens": {}}
    for name, value in SANDBOX_SECRETS.items():
        if not name.startswith("netsuite_"):
            production[name] = f"real-{value}"
    settings = Settings.model_validate(production)
    with pytest.raises(ValueError) as missing:
        netsuite_credentials(settings)
    assert "QTC_NETSUITE_CONSUMER_SECRET" in str(missing.value)
    assert "QTC_NETSUITE_ACCOUNT" in str(missing.value)

    with pytest.raises(ValueError, match="QTC_NETSUITE_TOKEN_SECRET"):
        Settings(
            _env_file=None,
            **production,
            netsuite_token_secret=SANDBOX_SECRETS["netsuite_token_secret"],
        )

    real = Settings.model_validate(
        {
            **production,
            "netsuite_account": "1234567_SB1",
            "netsuite_consumer_key": "ck",
            "netsuite_consumer_secret": "cs",
            "netsuite_token_id": "ti",
            "netsuite_token_secret": "ts",
        }
    )
    assert netsuite_credentials(real).token_secret.get_secret_value() == "ts"
    assert netsuite_base_url(real, "1234567_SB1") == (
        "https://1234567-sb1.suitetalk.api.netsuite.com/services/rest"
    )


def test_a_customer_field_netsuite_refuses_is_named_as_the_legal_entitys_field(
    erp: NetSuiteErp,
) -> None:
    quote = priced()
    # The quote's own validation would refuse this e-mail; NetSuite refuses it too.
    quote.account.billing_email = "ap@acme"

    parked = failure(erp, sync_input(quote))

    assert parked.type == errors.VENDOR_INVALID_REQUEST
    assert parked.details[0]["field"] == "/account/billing_email"
    assert parked.details[0]["netsuite_field"] == "email"


def test_with_tax_billed_the_lines_are_compared_net_and_netsuites_tax_is_its_own(
    erp: NetSuiteErp, ns_url: str
) -> None:
    quote = priced(currency="gbp")
    input = sync_input(quote)
    # Billing added 20 % VAT; NetSuite records the lines net and taxes by its own setup.
    input.billed_tax_minor = quote.invoices[0].total_minor // 5
    input.billed_total_minor += input.billed_tax_minor

    result = sync(erp, input)

    [invoice] = records(ns_url)["invoice"]
    assert round(invoice["subtotal"] * 100) == quote.invoices[0].total_minor
    assert result.total_minor == quote.invoices[0].total_minor
