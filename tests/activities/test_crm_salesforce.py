"""CRM activities against the Salesforce emulator, through simple-salesforce over TLS.

Tests that write create their own account and opportunity so they never disturb the seeded
opportunities other tests start deals from.
"""

from __future__ import annotations

import json
import socket
import ssl
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from simple_salesforce import Salesforce, SFType
from simple_salesforce.format import format_soql
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from integrations.salesforce.activities import SalesforceCrm
from integrations.salesforce.client import build_salesforce_client
from integrations.salesforce.mapping import FieldMap
from qtc import deal, errors, ports
from qtc.catalog import load_catalog
from qtc.cpq import price_quote
from runtime.settings import Settings
from sandbox.runner import RunningEmulators

CATALOG = Path(__file__).resolve().parents[2] / "catalog.toml"
SEEDED_ACME = "006000000000001AAA"


@pytest.fixture
def settings(emulators: RunningEmulators) -> Settings:
    return Settings(
        salesforce_instance_url=emulators.salesforce_url,
        salesforce_ca_file=emulators.salesforce_ca_file,
    )


@pytest.fixture
def sf(settings: Settings) -> Iterator[Salesforce]:
    client = build_salesforce_client(settings)
    try:
        yield client
    finally:
        client.session.close()


@pytest.fixture
def crm(sf: Salesforce) -> SalesforceCrm:
    return SalesforceCrm(sf, FieldMap())


@pytest.fixture
def sent_methods(sf: Salesforce) -> list[str]:
    """HTTP methods of every request the client sends from now on."""
    seen: list[str] = []
    sf.session.hooks["response"].append(lambda r, *_, **__: seen.append(r.request.method))
    return seen


def sobject(sf: Salesforce, name: str) -> SFType:
    return SFType(name, sf.session_id, sf.sf_instance, sf_version=sf.sf_version, session=sf.session)


@pytest.fixture
def new_opportunity(sf: Salesforce) -> Callable[..., str]:
    """Create an account, an opportunity and two line items; overrides go on the opportunity."""

    def create(**overrides: Any) -> str:
        suffix = uuid.uuid4().hex[:8]
        account = sobject(sf, "Account").create(
            {
                "Name": f"Test Robotics {suffix}",
                "BillingStreet": "9 Test Way",
                "BillingCity": "Austin",
                "BillingState": "TX",
                "BillingPostalCode": "78701",
                "BillingCountryCode": "US",
                "QTC_Billing_Email__c": f"ap-{suffix}@test.example",
            }
        )
        fields: dict[str, Any] = {
            "Name": f"Test opportunity {suffix}",
            "StageName": "Negotiation/Review",
            "CloseDate": "2026-09-30",
            "AccountId": account["id"],
            "CurrencyIsoCode": "USD",
            "QTC_Quote_Id__c": f"Q-{suffix}",
            "QTC_Term_Months__c": 12,
            "QTC_Billing_Frequency__c": "annual",
            "QTC_Billing_Anchor__c": "start",
            "QTC_Payment_Terms_Days__c": 30,
            "QTC_Uplift_Percent__c": 0,
            "QTC_Valid_Until__c": "2030-12-31",
            "QTC_Signer_Name__c": "Tess Tester",
            "QTC_Signer_Email__c": f"tess-{suffix}@test.example",
            **overrides,
        }
        opportunity = sobject(sf, "Opportunity").create(fields)
        products = sf.query(
            "SELECT Id, ProductCode FROM Product2 "
            "WHERE ProductCode IN ('PLATFORM-PRO', 'IMPL-SERVICES')"
        )["records"]
        for product in products:
            sobject(sf, "OpportunityLineItem").create(
                {
                    "OpportunityId": opportunity["id"],
                    "Product2Id": product["Id"],
                    "Quantity": 10 if product["ProductCode"] == "PLATFORM-PRO" else 1,
                    "Discount": 5 if product["ProductCode"] == "PLATFORM-PRO" else 0,
                    "UnitPrice": 120,
                }
            )
        return str(opportunity["id"])

    return create


@pytest.fixture
def faults(emulators: RunningEmulators) -> Iterator[Callable[[dict[str, Any]], None]]:
    """Switch Salesforce emulator faults on for one test; always switched off afterwards."""
    tls = ssl.create_default_context(cafile=str(emulators.salesforce_ca_file))
    control = httpx.Client(base_url=emulators.salesforce_url, verify=tls, timeout=10)

    def switch_on(rule: dict[str, Any]) -> None:
        control.post("/_sandbox/faults", json={"rules": [rule]}).raise_for_status()

    try:
        yield switch_on
    finally:
        control.post("/_sandbox/faults", json={"rules": []}).raise_for_status()
        control.close()


def run(fn: Callable[..., Any], arg: Any) -> Any:
    return ActivityEnvironment().run(fn, arg)


def opportunity_row(sf: Salesforce, opportunity_id: str, fields: str) -> dict[str, Any]:
    soql = format_soql("SELECT {:literal} FROM Opportunity WHERE Id = {}", fields, opportunity_id)
    return dict(sf.query(soql)["records"][0])


def test_a_seeded_opportunity_reads_as_a_quote_that_cpq_prices(crm: SalesforceCrm) -> None:
    quote = run(crm.read_opportunity, ports.ReadOpportunityInput(opportunity_id=SEEDED_ACME))

    assert quote.opportunity_id == SEEDED_ACME
    assert quote.quote_id == "Q-1001"
    assert quote.currency == "usd"
    assert quote.term_months == 36
    assert quote.account.legal_name == "Acme Robotics, Inc."
    assert quote.account.tax_id is not None
    assert quote.signer.email == "jane@acme.example"
    assert {(line.sku, line.quantity) for line in quote.lines} == {
        ("PLATFORM-PRO", 50),
        ("SUPPORT-PREMIUM", 1),
    }
    priced = price_quote(quote, load_catalog(CATALOG), datetime(2026, 12, 15, tzinfo=UTC))
    assert priced.status == "ok"
    pro = next(line for line in priced.lines if line.sku == "PLATFORM-PRO")
    assert pro.unit_amounts_by_year_minor == [129600, 138672, 148379]


def test_closing_the_deal_marks_the_opportunity_closed_won_only_once(
    crm: SalesforceCrm,
    sf: Salesforce,
    new_opportunity: Callable[..., str],
    sent_methods: list[str],
) -> None:
    opportunity_id = new_opportunity()
    close = ports.MarkClosedWonInput(
        deal_id=deal.deal_id_for(opportunity_id),
        opportunity_id=opportunity_id,
        close_date=date(2026, 12, 15),
    )

    run(crm.mark_closed_won, close)
    run(crm.mark_closed_won, close)

    row = opportunity_row(sf, opportunity_id, "StageName, CloseDate, QTC_Deal_Id__c")
    assert row["StageName"] == "Closed Won"
    assert row["CloseDate"] == "2026-12-15"
    assert row["QTC_Deal_Id__c"] == f"deal-{opportunity_id}"
    assert sent_methods.count("PATCH") == 1


def test_billing_ids_written_back_are_visible_in_the_crm(
    crm: SalesforceCrm, sf: Salesforce, new_opportunity: Callable[..., str]
) -> None:
    opportunity_id = new_opportunity()
    deal_id = deal.deal_id_for(opportunity_id)

    run(
        crm.write_back_billing_ids,
        ports.WriteBackInput(
            deal_id=deal_id, opportunity_id=opportunity_id, billing_customer_id="cus_T1"
        ),
    )
    run(
        crm.write_back_billing_ids,
        ports.WriteBackInput(
            deal_id=deal_id,
            opportunity_id=opportunity_id,
            billing_customer_id="cus_T1",
            billing_subscription_id="sub_T1",
            billing_invoice_id="in_T1",
            billing_invoice_url="https://invoice.example/in_T1",
        ),
    )

    row = opportunity_row(
        sf,
        opportunity_id,
        "Stripe_Customer_Id__c, Stripe_Subscription_Id__c, Stripe_Invoice_Id__c, "
        "Stripe_Invoice_Url__c",
    )
    assert row["Stripe_Customer_Id__c"] == "cus_T1"
    assert row["Stripe_Subscription_Id__c"] == "sub_T1"
    assert row["Stripe_Invoice_Id__c"] == "in_T1"
    assert row["Stripe_Invoice_Url__c"] == "https://invoice.example/in_T1"


def test_an_opportunity_created_in_the_crm_prices_with_its_required_sku(
    crm: SalesforceCrm, new_opportunity: Callable[..., str]
) -> None:
    opportunity_id = new_opportunity()

    quote = run(crm.read_opportunity, ports.ReadOpportunityInput(opportunity_id=opportunity_id))
    priced = price_quote(quote, load_catalog(CATALOG), datetime(2026, 12, 15, tzinfo=UTC))

    assert quote.account.address.line1 == "9 Test Way"
    assert [(line.sku, line.quantity) for line in priced.lines if not line.auto_added] == [
        ("PLATFORM-PRO", 10),
        ("IMPL-SERVICES", 1),
    ]


def test_a_missing_crm_field_parks_the_deal_naming_the_field(
    crm: SalesforceCrm, new_opportunity: Callable[..., str]
) -> None:
    opportunity_id = new_opportunity(QTC_Signer_Email__c=None)

    with pytest.raises(ApplicationError) as caught:
        run(crm.read_opportunity, ports.ReadOpportunityInput(opportunity_id=opportunity_id))

    assert caught.value.non_retryable
    assert caught.value.type == errors.VENDOR_INVALID_REQUEST
    assert "QTC_Signer_Email__c" in caught.value.message
    assert caught.value.details[0]["fields"] == ["QTC_Signer_Email__c"]


def test_a_crm_tax_id_the_billing_system_would_refuse_is_refused_naming_the_field(
    crm: SalesforceCrm, sf: Salesforce, new_opportunity: Callable[..., str]
) -> None:
    opportunity_id = new_opportunity()
    account_id = sobject(sf, "Opportunity").get(opportunity_id)["AccountId"]
    sobject(sf, "Account").update(
        account_id, {"QTC_Tax_Id_Type__c": "us_ein", "QTC_Tax_Id__c": "EIN 12345"}
    )

    with pytest.raises(ApplicationError) as caught:
        run(crm.read_opportunity, ports.ReadOpportunityInput(opportunity_id=opportunity_id))

    assert caught.value.non_retryable
    assert caught.value.type == errors.VENDOR_INVALID_REQUEST
    assert "Account.QTC_Tax_Id__c" in caught.value.message
    assert "12-3456789" in caught.value.message


def test_an_unknown_opportunity_is_not_found_and_not_retried(crm: SalesforceCrm) -> None:
    with pytest.raises(ApplicationError) as caught:
        run(crm.read_opportunity, ports.ReadOpportunityInput(opportunity_id="006000000009999AAA"))

    assert caught.value.non_retryable
    assert caught.value.type == errors.VENDOR_NOT_FOUND


def test_a_malformed_opportunity_id_never_reaches_soql(
    crm: SalesforceCrm, sent_methods: list[str]
) -> None:
    with pytest.raises(ApplicationError) as caught:
        run(crm.read_opportunity, ports.ReadOpportunityInput(opportunity_id="006' OR Name != '"))

    assert caught.value.non_retryable
    assert caught.value.type == errors.VENDOR_INVALID_REQUEST
    assert sent_methods == []


def test_a_record_locked_by_another_transaction_is_retried_not_parked(
    crm: SalesforceCrm,
    sf: Salesforce,
    new_opportunity: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opportunity_id = new_opportunity()
    send = sf.session.request

    def locked(method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        if method.upper() != "PATCH":
            return send(method, url, *args, **kwargs)
        # What Salesforce answers while another transaction holds the row.
        busy = requests.Response()
        busy.status_code = 400
        busy.url = url
        busy.headers["Content-Type"] = "application/json"
        busy._content = json.dumps(
            [{"errorCode": "UNABLE_TO_LOCK_ROW", "message": "unable to obtain exclusive access"}]
        ).encode()
        return busy

    monkeypatch.setattr(sf.session, "request", locked)
    close = ports.MarkClosedWonInput(
        deal_id=deal.deal_id_for(opportunity_id),
        opportunity_id=opportunity_id,
        close_date=date(2026, 12, 15),
    )
    with pytest.raises(ApplicationError) as caught:
        run(crm.mark_closed_won, close)

    assert (caught.value.type, caught.value.non_retryable) == (errors.VENDOR_UNAVAILABLE, False)
    assert "UNABLE_TO_LOCK_ROW" in caught.value.message


def test_a_salesforce_request_limit_is_retried(
    crm: SalesforceCrm, faults: Callable[[dict[str, Any]], None]
) -> None:
    faults({"path": "/query", "rate_429": 1.0})

    with pytest.raises(ApplicationError) as caught:
        run(crm.read_opportunity, ports.ReadOpportunityInput(opportunity_id=SEEDED_ACME))

    assert not caught.value.non_retryable
    assert caught.value.type == errors.VENDOR_RATE_LIMITED
    assert "REQUEST_LIMIT_EXCEEDED" in caught.value.message


def test_a_salesforce_outage_is_retried(
    crm: SalesforceCrm, faults: Callable[[dict[str, Any]], None]
) -> None:
    faults({"path": "/sobjects/Opportunity", "method": "PATCH", "rate_500": 1.0})

    with pytest.raises(ApplicationError) as caught:
        run(
            crm.write_back_billing_ids,
            ports.WriteBackInput(
                deal_id="deal-x", opportunity_id=SEEDED_ACME, billing_customer_id="cus_never"
            ),
        )

    assert not caught.value.non_retryable
    assert caught.value.type == errors.VENDOR_UNAVAILABLE


def test_an_expired_session_is_not_retried(emulators: RunningEmulators) -> None:
    bad = build_salesforce_client(
        Settings(
            salesforce_instance_url=emulators.salesforce_url,
            salesforce_ca_file=emulators.salesforce_ca_file,
            salesforce_session_id="expired-session",
        )
    )
    try:
        with pytest.raises(ApplicationError) as caught:
            run(
                SalesforceCrm(bad).read_opportunity,
                ports.ReadOpportunityInput(opportunity_id=SEEDED_ACME),
            )
    finally:
        bad.session.close()

    assert caught.value.non_retryable
    assert caught.value.type == errors.VENDOR_AUTHENTICATION


def test_an_unreachable_salesforce_is_retried(emulators: RunningEmulators) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    unreachable = build_salesforce_client(
        Settings(
            salesforce_instance_url=f"https://127.0.0.1:{closed_port}",
            salesforce_ca_file=emulators.salesforce_ca_file,
        )
    )

    with pytest.raises(ApplicationError) as caught:
        run(
            SalesforceCrm(unreachable).read_opportunity,
            ports.ReadOpportunityInput(opportunity_id=SEEDED_ACME),
        )

    assert not caught.value.non_retryable
    assert caught.value.type == errors.VENDOR_UNAVAILABLE
    assert isinstance(caught.value.__cause__, requests.ConnectionError)


def test_whether_an_opportunity_is_closed_won_is_read_from_its_stage(
    crm: SalesforceCrm, new_opportunity: Callable[..., str]
) -> None:
    opportunity_id = new_opportunity()
    before = crm.is_closed_won(opportunity_id)
    run(
        crm.mark_closed_won,
        ports.MarkClosedWonInput(
            deal_id=deal.deal_id_for(opportunity_id),
            opportunity_id=opportunity_id,
            close_date=date(2026, 12, 15),
        ),
    )

    assert (before, crm.is_closed_won(opportunity_id)) == (False, True)
    with pytest.raises(ApplicationError) as caught:
        crm.is_closed_won("006000000000404AAA")
    assert caught.value.type == errors.VENDOR_NOT_FOUND
