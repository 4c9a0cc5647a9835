"""The Salesforce emulator, driven through the real simple-salesforce client over verified TLS."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)
from simple_salesforce.login import SalesforceLogin

from sandbox.runner import RunningEmulators
from sandbox.salesforce.app import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    SANDBOX_PASSWORD,
    SANDBOX_SECURITY_TOKEN,
    SANDBOX_USERNAME,
)
from sandbox.salesforce.client import sandbox_salesforce, sobject

OPP = "006000000000001AAA"
OPPORTUNITY_SOQL = (
    "SELECT Id, Name, StageName, CloseDate, CurrencyIsoCode, QTC_Term_Months__c, "
    "QTC_Valid_Until__c, Account.Name, Account.BillingCountryCode, Account.QTC_Tax_Id__c, "
    "(SELECT Quantity, Discount, UnitPrice, Product2.ProductCode FROM OpportunityLineItems) "
    "FROM Opportunity WHERE Id = '{id}'"
)


@pytest.fixture
def sf(reset_emulators: RunningEmulators) -> Iterator[Salesforce]:
    client = sandbox_salesforce(reset_emulators.salesforce_url, reset_emulators.salesforce_ca_file)
    yield client
    client.session.close()


@pytest.fixture
def control(reset_emulators: RunningEmulators) -> Iterator[httpx.Client]:
    tls = ssl.create_default_context(cafile=str(reset_emulators.salesforce_ca_file))
    with httpx.Client(base_url=reset_emulators.salesforce_url, verify=tls, timeout=10) as client:
        yield client


def error_entry(exc: Any) -> dict[str, Any]:
    """The first ``{"message", "errorCode", ...}`` entry of a Salesforce error body."""
    entry: dict[str, Any] = exc.content[0]
    return entry


def error_code(exc: Any) -> str:
    return str(error_entry(exc)["errorCode"])


def test_opportunity_query_returns_account_fields_and_line_items_with_product_codes(
    sf: Salesforce,
) -> None:
    result = sf.query(OPPORTUNITY_SOQL.format(id=OPP))

    assert result["totalSize"] == 1 and result["done"] is True
    opportunity = result["records"][0]
    assert opportunity["attributes"]["type"] == "Opportunity"
    assert opportunity["StageName"] == "Negotiation/Review"
    assert opportunity["QTC_Valid_Until__c"] == "2030-12-31"
    # Salesforce numbers are doubles: a 36-month term reads back as 36.0.
    assert opportunity["QTC_Term_Months__c"] == 36.0
    assert opportunity["Account"]["Name"] == "Acme Robotics, Inc."
    assert opportunity["Account"]["BillingCountryCode"] == "US"
    assert opportunity["Account"]["QTC_Tax_Id__c"] == "12-3456789"
    lines = opportunity["OpportunityLineItems"]["records"]
    assert [(li["Product2"]["ProductCode"], li["Quantity"], li["Discount"]) for li in lines] == [
        ("PLATFORM-PRO", 50.0, 10.0),
        ("SUPPORT-PREMIUM", 1.0, 0.0),
    ]


def test_every_seeded_opportunity_is_open_with_line_items_on_catalog_skus(sf: Salesforce) -> None:
    result = sf.query(
        "SELECT Id, StageName, (SELECT Product2.ProductCode FROM OpportunityLineItems) "
        "FROM Opportunity ORDER BY Id"
    )

    assert [r["Id"] for r in result["records"]] == [f"006{n:012d}AAA" for n in range(1, 12)]
    assert {r["StageName"] for r in result["records"]} == {"Negotiation/Review"}
    codes = {
        li["Product2"]["ProductCode"]
        for r in result["records"]
        for li in r["OpportunityLineItems"]["records"]
    }
    assert codes == {
        "PLATFORM-PRO",
        "PLATFORM-STARTER",
        "IMPL-SERVICES",
        "SUPPORT-PREMIUM",
        "ANALYTICS-ADDON",
        "EXTRA-STORAGE-TB",
    }


def test_where_with_in_and_date_and_number_literals_filters_and_limits(sf: Salesforce) -> None:
    result = sf.query(
        "SELECT Id FROM Opportunity WHERE CurrencyIsoCode IN ('USD', 'GBP') "
        "AND CloseDate <= 2026-06-30 AND QTC_Term_Months__c = 36 ORDER BY CloseDate DESC LIMIT 5"
    )

    assert [r["Id"] for r in result["records"]] == ["006000000000004AAA", "006000000000001AAA"]


def test_string_equality_ignores_case_like_soql(sf: Salesforce) -> None:
    result = sf.query("select id from opportunity where account.name = 'ACME ROBOTICS, INC.'")

    assert sorted(r["Id"] for r in result["records"]) == [
        "006000000000001AAA",
        "006000000000007AAA",
        "006000000000008AAA",
    ]


def test_closing_an_opportunity_is_seen_by_the_next_read(sf: Salesforce) -> None:
    status = sobject(sf, "Opportunity").update(
        OPP, {"StageName": "Closed Won", "CloseDate": "2026-12-15"}
    )

    assert status == 204
    record = sobject(sf, "Opportunity").get(OPP)
    assert (record["StageName"], record["CloseDate"]) == ("Closed Won", "2026-12-15")
    assert record["LastModifiedDate"] > record["CreatedDate"]


def test_upsert_by_deal_id_creates_once_then_updates_the_same_record(sf: Salesforce) -> None:
    body = {"Name": "Wayne Enterprises", "StageName": "Prospecting", "CloseDate": "2026-09-30"}

    created = sobject(sf, "Opportunity").upsert(
        "QTC_Deal_Id__c/deal-new-1", body, raw_response=True
    )
    updated = sobject(sf, "Opportunity").upsert(
        "QTC_Deal_Id__c/deal-new-1", {"StageName": "Closed Won"}
    )

    assert created.status_code == 201 and created.json()["created"] is True
    assert updated == 204
    record = sobject(sf, "Opportunity").get_by_custom_id("QTC_Deal_Id__c", "deal-new-1")
    assert record["Id"] == created.json()["id"]
    assert record["StageName"] == "Closed Won"
    matches = sf.query("SELECT Id FROM Opportunity WHERE QTC_Deal_Id__c = 'deal-new-1'")
    assert matches["totalSize"] == 1


def test_writing_billing_ids_back_is_visible_in_a_query(sf: Salesforce) -> None:
    sobject(sf, "Opportunity").update(
        OPP,
        {
            "Stripe_Customer_Id__c": "cus_123",
            "Stripe_Subscription_Id__c": "sub_123",
            "Stripe_Invoice_Url__c": "https://invoice.example/in_1",
        },
    )

    result = sf.query(
        "SELECT Stripe_Customer_Id__c, Stripe_Subscription_Id__c FROM Opportunity "
        "WHERE Id = '006000000000001AAA'"
    )
    record = result["records"][0]
    assert (record["Stripe_Customer_Id__c"], record["Stripe_Subscription_Id__c"]) == (
        "cus_123",
        "sub_123",
    )


def test_unknown_field_in_an_update_is_invalid_field(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sobject(sf, "Opportunity").update(OPP, {"Free_Text_Terms__c": "net 90, unbilled"})

    assert error_code(raised.value) == "INVALID_FIELD"
    assert raised.value.status == 400


@pytest.mark.parametrize(
    ("soql", "code"),
    [
        ("SELECT Id, Nope__c FROM Opportunity", "INVALID_FIELD"),
        ("SELECT Id FROM Opportunity WHERE Missing__c = 'x'", "INVALID_FIELD"),
        ("SELECT Id FROM Opportunity WHERE QTC_Term_Months__c = '36'", "INVALID_FIELD"),
        ("SELECT Id FROM Invoice__c", "INVALID_TYPE"),
        ("SELECT Id FROM Opportunity WHERE", "MALFORMED_QUERY"),
        ("SELECT Id Opportunity", "MALFORMED_QUERY"),
        ("SELECT Id FROM Opportunity WHERE Name = 'unterminated", "MALFORMED_QUERY"),
    ],
)
def test_bad_soql_is_refused_with_salesforces_error_code(
    sf: Salesforce, soql: str, code: str
) -> None:
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.query(soql)

    assert error_code(raised.value) == code


def test_missing_opportunity_is_resource_not_found(sf: Salesforce) -> None:
    with pytest.raises(SalesforceResourceNotFound) as raised:
        sobject(sf, "Opportunity").get("006000000000999AAA")

    assert error_code(raised.value) == "NOT_FOUND"


def test_wrong_session_id_is_an_expired_session(reset_emulators: RunningEmulators) -> None:
    sf = sandbox_salesforce(
        reset_emulators.salesforce_url, reset_emulators.salesforce_ca_file, session_id="stolen"
    )

    with pytest.raises(SalesforceExpiredSession) as raised:
        sf.query("SELECT Id FROM Opportunity")
    sf.session.close()

    assert error_code(raised.value) == "INVALID_SESSION_ID"


def test_rate_limit_fault_is_salesforces_403_request_limit_exceeded(
    sf: Salesforce, control: httpx.Client
) -> None:
    control.post("/_sandbox/faults", json={"rules": [{"path": "/query", "rate_429": 1}]})

    with pytest.raises(SalesforceRefusedRequest) as raised:
        sf.query("SELECT Id FROM Opportunity")

    assert raised.value.status == 403
    assert error_code(raised.value) == "REQUEST_LIMIT_EXCEEDED"
    # Only matching paths are refused: a record read still works.
    assert sobject(sf, "Opportunity").get(OPP)["Id"] == OPP
    stats = control.get("/_sandbox/stats").json()
    assert stats["errors"] == {"REQUEST_LIMIT_EXCEEDED": 1}
    assert stats["faults_injected"]["429"] == 1


def test_server_error_fault_is_a_general_error_with_status_500(
    sf: Salesforce, control: httpx.Client
) -> None:
    control.post("/_sandbox/faults", json={"rules": [{"method": "PATCH", "rate_500": 1}]})

    with pytest.raises(SalesforceGeneralError) as raised:
        sobject(sf, "Opportunity").update(OPP, {"StageName": "Closed Won"})

    assert raised.value.status == 500
    assert error_code(raised.value) == "UNKNOWN_EXCEPTION"
    assert sobject(sf, "Opportunity").get(OPP)["StageName"] == "Negotiation/Review"


def test_large_results_are_paged_through_next_records_url(sf: Salesforce) -> None:
    paging = {"Sforce-Query-Options": "batchSize=4"}
    first = sf.query("SELECT Id FROM OpportunityLineItem ORDER BY Id", headers=paging)
    everything = sf.query_all("SELECT Id FROM OpportunityLineItem ORDER BY Id", headers=paging)

    assert first["done"] is False and len(first["records"]) == 4
    assert first["nextRecordsUrl"].startswith("/services/data/v59.0/query/")
    ids = [r["Id"] for r in everything["records"]]
    assert first["totalSize"] == len(ids) == 21
    assert ids == sorted(set(ids))


def test_deleted_record_is_hidden_from_query_but_returned_by_query_all(sf: Salesforce) -> None:
    sobject(sf, "Contact").delete("003000000000003AAA")

    live = sf.query("SELECT Id FROM Contact")
    with_deleted = sf.query_all("SELECT Id, IsDeleted FROM Contact", include_deleted=True)

    assert "003000000000003AAA" not in [r["Id"] for r in live["records"]]
    assert {"Id": "003000000000003AAA", "IsDeleted": True} in [
        {"Id": r["Id"], "IsDeleted": r["IsDeleted"]} for r in with_deleted["records"]
    ]
    with pytest.raises(SalesforceResourceNotFound):
        sobject(sf, "Contact").get("003000000000003AAA")


def test_a_look_up_by_id_still_applies_the_whole_where_and_hides_deleted_records(
    sf: Salesforce,
) -> None:
    by_id = "SELECT Id FROM Opportunity WHERE Id = '006000000000001AAA'"
    assert [r["Id"] for r in sf.query(by_id)["records"]] == ["006000000000001AAA"]
    assert sf.query(f"{by_id} AND StageName = 'Closed Lost'")["totalSize"] == 0
    lowered = "SELECT Id FROM Opportunity WHERE Id = '006000000000001aaa'"
    assert [r["Id"] for r in sf.query(lowered)["records"]] == ["006000000000001AAA"]

    sobject(sf, "Contact").delete("003000000000003AAA")
    contact = "SELECT Id FROM Contact WHERE Id = '003000000000003AAA'"
    assert sf.query(contact)["totalSize"] == 0
    assert sf.query_all(contact, include_deleted=True)["totalSize"] == 1


def test_stage_outside_the_picklist_is_refused(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sobject(sf, "Opportunity").update(OPP, {"StageName": "Won-ish"})

    assert error_code(raised.value) == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"


def test_creating_a_record_without_required_fields_is_refused(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sobject(sf, "Opportunity").create({"Name": "No stage"})

    assert error_code(raised.value) == "REQUIRED_FIELD_MISSING"
    assert error_entry(raised.value)["fields"] == ["StageName", "CloseDate"]


def test_created_line_item_appears_under_its_opportunity(sf: Salesforce) -> None:
    created = sobject(sf, "OpportunityLineItem").create(
        {
            "OpportunityId": "006000000000003AAA",
            "Product2Id": "01t000000000005AAA",
            "Quantity": 10,
            "UnitPrice": 15,
        }
    )

    result = sf.query(
        "SELECT (SELECT Id, Product2.ProductCode FROM OpportunityLineItems) FROM Opportunity "
        "WHERE Id = '006000000000003AAA'"
    )
    lines = result["records"][0]["OpportunityLineItems"]["records"]
    assert {"Id": created["id"], "code": "ANALYTICS-ADDON"} in [
        {"Id": li["Id"], "code": li["Product2"]["ProductCode"]} for li in lines
    ]


def test_oversize_body_is_refused_with_413_not_a_server_error(sf: Salesforce) -> None:
    with pytest.raises(SalesforceGeneralError) as raised:
        sobject(sf, "Opportunity").update(OPP, {"Name": "x" * 3_000_000})

    assert raised.value.status == 413


def test_client_trusts_only_the_sandbox_ca(reset_emulators: RunningEmulators) -> None:
    system_trust = requests.Session()
    system_trust.verify = True

    with pytest.raises(requests.exceptions.SSLError):
        system_trust.get(f"{reset_emulators.salesforce_url}/services/data/", timeout=10)


def test_versions_are_listed_without_a_session(control: httpx.Client) -> None:
    versions = control.get("/services/data/").json()

    assert {"label": "Winter '24", "url": "/services/data/v59.0", "version": "59.0"} in versions


def test_oauth_password_and_client_credentials_flows_return_session_and_instance(
    control: httpx.Client, reset_emulators: RunningEmulators
) -> None:
    client = {"client_id": SANDBOX_CLIENT_ID, "client_secret": SANDBOX_CLIENT_SECRET}
    password = control.post(
        "/services/oauth2/token",
        data={
            "grant_type": "password",
            "username": SANDBOX_USERNAME,
            "password": SANDBOX_PASSWORD + SANDBOX_SECURITY_TOKEN,
            **client,
        },
    )
    machine = control.post(
        "/services/oauth2/token", data={"grant_type": "client_credentials", **client}
    )
    refused = control.post(
        "/services/oauth2/token",
        data={"grant_type": "password", "username": SANDBOX_USERNAME, "password": "x", **client},
    )

    for response in (password, machine):
        assert response.status_code == 200
        body = response.json()
        assert body["instance_url"] == reset_emulators.salesforce_url
        sf = sandbox_salesforce(
            body["instance_url"], reset_emulators.salesforce_ca_file, body["access_token"]
        )
        assert sobject(sf, "Opportunity").get(OPP)["Id"] == OPP
        sf.session.close()
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


def test_soap_username_password_login_as_simple_salesforce_does_it(
    reset_emulators: RunningEmulators,
) -> None:
    session = requests.Session()
    session.verify = str(reset_emulators.salesforce_ca_file)
    session.trust_env = False

    session_id, instance = SalesforceLogin(
        username=SANDBOX_USERNAME,
        password=SANDBOX_PASSWORD,
        security_token=SANDBOX_SECURITY_TOKEN,
        session=session,
        scratch_url=reset_emulators.salesforce_url,
    )
    with pytest.raises(SalesforceAuthenticationFailed) as raised:
        SalesforceLogin(
            username=SANDBOX_USERNAME,
            password="guess",
            session=session,
            scratch_url=reset_emulators.salesforce_url,
        )

    assert f"https://{instance}" == reset_emulators.salesforce_url
    sf = Salesforce(instance=instance, session_id=session_id, session=session)
    assert sf.query("SELECT Id FROM Account")["totalSize"] == 9
    assert raised.value.code == "INVALID_LOGIN"
    session.close()


def test_reset_brings_the_seed_data_back(sf: Salesforce, control: httpx.Client) -> None:
    sobject(sf, "Opportunity").update(OPP, {"StageName": "Closed Lost"})
    sobject(sf, "Account").create({"Name": "Temporary"})

    control.post("/_sandbox/reset").raise_for_status()

    assert sobject(sf, "Opportunity").get(OPP)["StageName"] == "Negotiation/Review"
    assert control.get("/_sandbox/stats").json()["records"]["Account"] == 9
