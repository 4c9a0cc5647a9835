"""The legal entity's tax id is checked before the contract: the billing system would refuse a
type not issued in the entity's country, or a value not in the type's published format, and by
then the contract would already be signed."""

from __future__ import annotations

from typing import Any

import pytest

from qtc import tax_ids
from qtc.catalog import load_catalog
from qtc.cpq import parse_quote, price_quote
from qtc.errors import QuoteRejected
from sandbox.salesforce.seed import ACCOUNTS
from tests.unit.builders import REPO_ROOT, SIGNED, quote_dict


def _quote_with(country: str, tax_type: str, value: str) -> dict[str, Any]:
    quote = quote_dict()
    quote["account"]["address"]["country"] = country
    quote["account"]["tax_id"] = {"type": tax_type, "value": value}
    return quote


def _rejection(quote: dict[str, Any]) -> list[tuple[str, str, str]]:
    with pytest.raises(QuoteRejected) as caught:
        parse_quote(quote)
    return [(v.pointer, v.code, v.message) for v in caught.value.violations]


@pytest.mark.parametrize(
    ("country", "tax_type", "value"),
    [
        ("US", "us_ein", "12-3456789"),
        ("GB", "gb_vat", "GB123456789"),
        ("GB", "eu_vat", "XI123456789"),
        ("DE", "eu_vat", "DE123456789"),
        ("DE", "de_stn", "1234567890"),
        ("GR", "eu_vat", "EL123456789"),
        ("AT", "eu_vat", "ATU12345678"),
        ("FR", "eu_vat", "FRAB123456789"),
        ("NL", "eu_vat", "NL123456789B12"),
        ("CA", "ca_gst_hst", "123456789RT0002"),
        ("CH", "ch_vat", "CHE-123.456.789 MWST"),
        ("AU", "au_abn", "12345678912"),
        ("ES", "ic_nif", "A12345678"),
        ("US", "eu_oss_vat", "EU123456789"),
    ],
)
def test_a_published_tax_id_of_the_entitys_country_passes(
    country: str, tax_type: str, value: str
) -> None:
    parsed = parse_quote(_quote_with(country, tax_type, value))

    assert parsed.account.tax_id is not None
    assert parsed.account.tax_id.value == value


def test_a_crm_style_vat_type_is_refused_naming_the_types_of_the_country() -> None:
    errors = _rejection(_quote_with("DE", "vat", "DE123456789"))

    assert [(p, c) for p, c, _ in errors] == [("/account/tax_id/type", "invalid_field")]
    assert "de_stn, eu_oss_vat, eu_vat" not in errors[0][2]  # eu_oss_vat is for non-EU entities
    assert "for DE (de_stn, eu_vat)" in errors[0][2]
    assert 'not "vat"' in errors[0][2]


def test_a_malformed_vat_number_is_refused_at_the_value_with_an_example() -> None:
    errors = _rejection(_quote_with("DE", "eu_vat", "DE 123"))

    assert errors == [
        (
            "/account/tax_id/value",
            "invalid_field",
            "account.tax_id.value must be a VAT number of DE with its DE prefix, such as "
            'DE123456789, written without spaces, not "DE 123"',
        )
    ]


def test_a_vat_number_of_another_member_state_is_refused() -> None:
    errors = _rejection(_quote_with("DE", "eu_vat", "FRAB123456789"))

    assert [p for p, _, _ in errors] == ["/account/tax_id/value"]


def test_a_type_of_another_country_is_refused() -> None:
    errors = _rejection(_quote_with("GB", "us_ein", "12-3456789"))

    assert [p for p, _, _ in errors] == ["/account/tax_id/type"]
    assert "for GB (eu_oss_vat, eu_vat, gb_vat)" in errors[0][2]


def test_a_malformed_ein_is_refused() -> None:
    errors = _rejection(_quote_with("US", "us_ein", "123"))

    assert [p for p, _, _ in errors] == ["/account/tax_id/value"]
    assert "such as 12-3456789" in errors[0][2]


def test_tax_id_problems_are_reported_with_the_other_structural_ones() -> None:
    quote = _quote_with("DE", "eu_vat", "DE 123")
    quote["term_months"] = "twelve"

    assert [p for p, _, _ in _rejection(quote)] == ["/account/tax_id/value", "/term_months"]


def test_pricing_refuses_a_malformed_tax_id_before_any_contract() -> None:
    with pytest.raises(QuoteRejected) as caught:
        price_quote(
            _quote_with("US", "eu_vat", "DE123456789"),
            load_catalog(REPO_ROOT / "catalog.toml"),
            SIGNED,
        )

    assert [v.pointer for v in caught.value.violations] == ["/account/tax_id/type"]


def test_a_quote_without_a_tax_id_still_passes() -> None:
    quote = quote_dict()
    del quote["account"]["tax_id"]

    assert parse_quote(quote).account.tax_id is None


@pytest.mark.parametrize("tax_type", sorted(tax_ids.FORMATS))
def test_every_published_example_has_its_types_format(tax_type: str) -> None:
    fmt = tax_ids.FORMATS[tax_type]

    assert tax_ids.value_is_valid(tax_type, fmt.example)


def test_every_eu_state_has_a_vat_format_and_example() -> None:
    for country in sorted(tax_ids.EU_COUNTRIES | {"GB"}):
        sample = tax_ids.example("eu_vat", country)
        assert sample is not None, country
        assert tax_ids.check(country, "eu_vat", sample) == [], country
        assert tax_ids.country_of_value("eu_vat", sample) == country


@pytest.mark.parametrize(
    "example", sorted(p.name for p in (REPO_ROOT / "examples").glob("*.json")), ids=str
)
def test_every_example_quote_holds_a_tax_id_the_billing_system_accepts(example: str) -> None:
    try:
        parse_quote((REPO_ROOT / "examples" / example).read_bytes())
    except QuoteRejected as rejected:
        assert not [v for v in rejected.violations if v.pointer.startswith("/account/tax_id")]


def test_every_seeded_crm_account_holds_a_tax_id_the_billing_system_accepts() -> None:
    for account in ACCOUNTS:
        tax_type, value = account["QTC_Tax_Id_Type__c"], account["QTC_Tax_Id__c"]
        if tax_type or value:
            assert tax_ids.check(account["BillingCountryCode"], tax_type, value) == [], account
