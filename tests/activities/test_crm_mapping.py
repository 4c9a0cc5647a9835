"""The CRM-to-quote mapping on its own: what a RevOps admin sees when a field is wrong."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from integrations.salesforce.mapping import FieldMap, OpportunityDataError, quote_from_opportunity
from qtc.catalog import load_catalog
from qtc.cpq import price_quote
from runtime.settings import Settings

CATALOG = Path(__file__).resolve().parents[2] / "catalog.toml"


def soql_record() -> dict[str, Any]:
    """An opportunity exactly as Salesforce's query endpoint returns it (numbers as doubles)."""
    return {
        "attributes": {"type": "Opportunity"},
        "Id": "006000000000001AAA",
        "Name": "Acme Robotics - Platform Pro 3y",
        "StageName": "Negotiation/Review",
        "CloseDate": "2026-03-31",
        "CurrencyIsoCode": "USD",
        "QTC_Quote_Id__c": "Q-1001",
        "QTC_Term_Months__c": 36.0,
        "QTC_Billing_Frequency__c": "Annual",
        "QTC_Billing_Anchor__c": "start",
        "QTC_Payment_Terms_Days__c": 30.0,
        "QTC_Uplift_Percent__c": 7.0,
        "QTC_Valid_Until__c": "2030-12-31",
        "QTC_Signer_Name__c": "Jane Doe",
        "QTC_Signer_Email__c": "jane@acme.example",
        "QTC_Deal_Id__c": None,
        "Account": {
            "attributes": {"type": "Account"},
            "Name": "Acme Robotics, Inc.",
            "BillingStreet": "1 Main St\nSuite 200",
            "BillingCity": "Austin",
            "BillingState": "TX",
            "BillingPostalCode": "78701",
            "BillingCountryCode": "US",
            "QTC_Billing_Email__c": "ap@acme.example",
            "QTC_Tax_Id_Type__c": "us_ein",
            "QTC_Tax_Id__c": "12-3456789",
        },
        "OpportunityLineItems": {
            "totalSize": 2,
            "done": True,
            "records": [
                {"Quantity": 50.0, "Discount": 10.0, "Product2": {"ProductCode": "PLATFORM-PRO"}},
                {"Quantity": 1.0, "Discount": None, "Product2": {"ProductCode": "SUPPORT-PREMIUM"}},
            ],
        },
    }


def problem_fields(exc: OpportunityDataError) -> list[str]:
    return [p.field for p in exc.problems]


def test_an_opportunity_becomes_the_quote_the_customer_will_sign() -> None:
    quote = quote_from_opportunity(soql_record(), FieldMap())

    assert quote.quote_id == "Q-1001"
    assert quote.opportunity_id == "006000000000001AAA"
    assert quote.currency == "usd"
    assert quote.term_months == 36
    assert quote.billing_frequency == "annual"
    assert quote.payment_terms_days == 30
    assert quote.uplift_percent == Decimal("7.0")
    assert quote.start == "on_signature"
    assert quote.account.legal_name == "Acme Robotics, Inc."
    assert quote.account.address.line1 == "1 Main St"
    assert quote.account.address.line2 == "Suite 200"
    assert quote.account.tax_id is not None
    assert quote.account.tax_id.value == "12-3456789"
    assert quote.signer.email == "jane@acme.example"
    assert [(line.sku, line.quantity, line.discount_percent) for line in quote.lines] == [
        ("PLATFORM-PRO", 50, Decimal("10.0")),
        ("SUPPORT-PREMIUM", 1, Decimal("0")),
    ]


def test_the_mapped_quote_passes_cpq_and_prices_as_the_design_example() -> None:
    quote = quote_from_opportunity(soql_record(), FieldMap())
    priced = price_quote(quote, load_catalog(CATALOG), datetime(2026, 12, 15, tzinfo=UTC))

    pro = next(line for line in priced.lines if line.sku == "PLATFORM-PRO")
    assert pro.unit_amounts_by_year_minor == [129600, 138672, 148379]
    assert any(line.sku == "IMPL-SERVICES" and line.auto_added for line in priced.lines)


def test_a_missing_term_names_the_crm_field_to_fix() -> None:
    record = soql_record()
    record["QTC_Term_Months__c"] = None

    with pytest.raises(OpportunityDataError) as caught:
        quote_from_opportunity(record, FieldMap())

    assert problem_fields(caught.value) == ["QTC_Term_Months__c"]
    assert "006000000000001AAA" in str(caught.value)


def test_every_bad_field_is_reported_at_once_with_its_crm_path() -> None:
    record = soql_record()
    record["Account"]["QTC_Billing_Email__c"] = "not an email"
    record["QTC_Billing_Frequency__c"] = "Weekly"
    record["OpportunityLineItems"]["records"][1]["Quantity"] = 1.5

    with pytest.raises(OpportunityDataError) as caught:
        quote_from_opportunity(record, FieldMap())

    assert sorted(problem_fields(caught.value)) == [
        "Account.QTC_Billing_Email__c",
        "OpportunityLineItems[1].Quantity",
        "QTC_Billing_Frequency__c",
    ]


def test_an_opportunity_without_an_account_names_the_account_fields() -> None:
    record = soql_record()
    record["Account"] = None

    with pytest.raises(OpportunityDataError) as caught:
        quote_from_opportunity(record, FieldMap())

    fields = problem_fields(caught.value)
    assert "Account.Name" in fields
    assert "Account.BillingStreet" in fields
    assert "Account.BillingCountryCode" in fields


def test_a_tax_id_without_its_type_is_refused() -> None:
    record = soql_record()
    record["Account"]["QTC_Tax_Id_Type__c"] = None

    with pytest.raises(OpportunityDataError) as caught:
        quote_from_opportunity(record, FieldMap())

    assert problem_fields(caught.value) == ["Account.QTC_Tax_Id_Type__c"]


def test_an_opportunity_without_line_items_cannot_be_quoted() -> None:
    record = soql_record()
    record["OpportunityLineItems"] = None

    with pytest.raises(OpportunityDataError) as caught:
        quote_from_opportunity(record, FieldMap())

    assert problem_fields(caught.value) == ["OpportunityLineItems"]


def test_an_org_with_its_own_field_names_is_mapped_through_settings() -> None:
    record = copy.deepcopy(soql_record())
    record["Contract_Term__c"] = record.pop("QTC_Term_Months__c")
    record["Desired_Start__c"] = "2031-01-01"
    settings = Settings(
        salesforce_field_map={"term_months": "Contract_Term__c", "start_date": "Desired_Start__c"}
    )

    field_map = FieldMap.from_settings(settings)
    quote = quote_from_opportunity(record, field_map)

    assert quote.term_months == 36
    assert str(quote.start) == "2031-01-01"
    assert "Contract_Term__c" in field_map.opportunity_soql("006000000000001AAA")


def test_a_field_map_cannot_smuggle_soql_into_the_query() -> None:
    with pytest.raises(ValidationError):
        FieldMap(term_months="Name FROM User WHERE Id != null --")
    with pytest.raises(ValidationError):
        FieldMap.model_validate({"no_such_fact": "Foo__c"})


def test_a_flow_callout_with_flat_line_items_maps_the_same_way() -> None:
    record = soql_record()
    record["OpportunityLineItems"] = [
        {"Quantity": 50, "Discount": 10, "Product2.ProductCode": "PLATFORM-PRO"},
    ]

    quote = quote_from_opportunity(record, FieldMap())

    assert [(line.sku, line.quantity) for line in quote.lines] == [("PLATFORM-PRO", 50)]


def test_the_one_soql_query_reads_the_account_and_line_items() -> None:
    soql = FieldMap().opportunity_soql("006000000000001AAA")

    assert soql.startswith("SELECT Id, Name, StageName")
    assert "Account.QTC_Tax_Id__c" in soql
    assert "(SELECT Quantity, Discount, Product2.ProductCode FROM OpportunityLineItems)" in soql
    assert soql.endswith("FROM Opportunity WHERE Id = '006000000000001AAA'")


def test_a_malformed_tax_id_in_the_crm_is_refused_naming_the_crm_field() -> None:
    record = soql_record()
    record["Account"]["BillingCountryCode"] = "DE"
    record["Account"]["QTC_Tax_Id_Type__c"] = "eu_vat"
    record["Account"]["QTC_Tax_Id__c"] = "DE 123"

    with pytest.raises(OpportunityDataError) as caught:
        quote_from_opportunity(record, FieldMap())

    assert problem_fields(caught.value) == ["Account.QTC_Tax_Id__c"]
    assert "such as DE123456789" in caught.value.problems[0].message
    assert "'DE 123'" in caught.value.problems[0].message


def test_a_crm_tax_id_type_the_billing_system_does_not_know_is_refused() -> None:
    record = soql_record()
    record["Account"]["QTC_Tax_Id_Type__c"] = "vat"

    with pytest.raises(OpportunityDataError) as caught:
        quote_from_opportunity(record, FieldMap())

    assert problem_fields(caught.value) == ["Account.QTC_Tax_Id_Type__c"]
    assert "accepts for US (eu_oss_vat, us_ein)" in caught.value.problems[0].message
