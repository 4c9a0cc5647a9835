"""parse_quote: untrusted input becomes a Quote or a list of invalid_field violations."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from qtc.cpq import MAX_QUOTE_BYTES, parse_quote
from qtc.errors import QuoteRejected
from qtc.models import Violation
from tests.unit.builders import quote_dict


def rejection(raw: bytes | str | dict[str, Any]) -> list[Violation]:
    with pytest.raises(QuoteRejected) as caught:
        parse_quote(raw)
    assert all(v.code == "invalid_field" for v in caught.value.violations)
    return caught.value.violations


def pointers(raw: bytes | str | dict[str, Any]) -> list[str]:
    return [v.pointer for v in rejection(raw)]


def test_a_well_formed_quote_parses_the_same_from_bytes_text_and_dict() -> None:
    raw = quote_dict()
    from_dict = parse_quote(raw)
    assert parse_quote(json.dumps(raw)) == from_dict
    assert parse_quote(json.dumps(raw).encode()) == from_dict
    assert from_dict.lines[0].discount_percent == Decimal("10")
    assert from_dict.valid_until == date(2030, 12, 31)


def test_fractional_numbers_in_json_become_decimals_never_floats() -> None:
    text = json.dumps(quote_dict()).replace('"discount_percent": "10"', '"discount_percent": 12.35')
    line = parse_quote(text).lines[0]
    assert line.discount_percent == Decimal("12.35")
    assert isinstance(line.discount_percent, Decimal)


def test_malformed_json_is_rejected_with_its_position() -> None:
    [violation] = rejection('{"quote_id": "Q-1", "lines": [')
    assert violation.pointer == ""
    assert "not valid JSON" in violation.message
    assert "line 1 column" in violation.message


def test_bytes_that_are_not_utf8_are_rejected() -> None:
    raw = json.dumps(quote_dict()).encode().replace(b"Acme", b"Acm\xe9")
    [violation] = rejection(raw)
    assert violation.pointer == ""
    assert "not UTF-8" in violation.message
    assert "0xe9" in violation.message


def test_a_utf8_byte_order_mark_is_tolerated() -> None:
    assert parse_quote(b"\xef\xbb\xbf" + json.dumps(quote_dict()).encode()).quote_id == "Q-1001"


def test_a_document_over_one_megabyte_is_rejected_before_parsing() -> None:
    raw = b" " * MAX_QUOTE_BYTES + json.dumps(quote_dict()).encode()
    [violation] = rejection(raw)
    assert violation.pointer == ""
    assert f"limit is {MAX_QUOTE_BYTES} bytes" in violation.message


def test_a_json_array_is_not_a_quote() -> None:
    assert pointers("[1, 2]") == [""]


def test_a_text_number_where_a_whole_number_is_expected_is_rejected() -> None:
    [violation] = rejection(quote_dict(term_months="36"))
    assert violation.pointer == "/term_months"
    assert violation.message == 'term_months must be a whole number, not "36"'


def test_a_fractional_quantity_is_rejected_at_its_line() -> None:
    text = json.dumps(quote_dict()).replace('"quantity": 50', '"quantity": 2.5')
    [violation] = rejection(text)
    assert violation.pointer == "/lines/0/quantity"
    assert "whole number" in violation.message
    assert "2.5" in violation.message


@pytest.mark.parametrize("quantity", [0, -3])
def test_a_quantity_below_one_is_not_a_quantity(quantity: int) -> None:
    lines = [
        {"sku": "SUPPORT-PREMIUM", "quantity": 1},
        {"sku": "PLATFORM-PRO", "quantity": quantity},
    ]
    [violation] = rejection(quote_dict(lines=lines))
    assert violation.pointer == "/lines/1/quantity"
    assert violation.message == f"lines[1].quantity must be at least 1, not {quantity}"


def test_a_boolean_quantity_is_rejected() -> None:
    assert pointers(quote_dict(lines=[{"sku": "PLATFORM-PRO", "quantity": True}])) == [
        "/lines/0/quantity"
    ]


def test_an_unknown_top_level_field_is_rejected_so_no_free_text_term_rides_along() -> None:
    [violation] = rejection(quote_dict(side_letter="first year free"))
    assert violation.pointer == "/side_letter"
    assert "signed but never billed" in violation.message


def test_an_unknown_nested_field_is_rejected_with_its_full_pointer() -> None:
    raw = quote_dict()
    raw["account"]["address"]["fax"] = "555-0100"
    raw["lines"][0]["free_months"] = 3
    assert pointers(raw) == ["/account/address/fax", "/lines/0/free_months"]


def test_missing_legal_entity_data_is_rejected() -> None:
    raw = quote_dict()
    del raw["account"]["legal_name"]
    raw["account"]["address"]["country"] = "usa"
    violations = rejection(raw)
    assert [v.pointer for v in violations] == ["/account/legal_name", "/account/address/country"]
    assert violations[0].message == "account.legal_name is required"
    assert "two-letter ISO country code" in violations[1].message


def test_all_structural_problems_are_reported_together() -> None:
    raw = quote_dict(currency="USD", billing_frequency="weekly", valid_until="soon")
    del raw["signer"]
    assert pointers(raw) == ["/currency", "/signer", "/billing_frequency", "/valid_until"]


def test_a_start_that_is_neither_on_signature_nor_a_date_gets_one_clear_violation() -> None:
    [violation] = rejection(quote_dict(start="next tuesday"))
    assert violation.pointer == "/start"
    assert (
        violation.message
        == 'start must be "on_signature" or a date such as 2027-01-31, not "next tuesday"'
    )


def test_a_repeated_json_key_is_rejected_instead_of_silently_keeping_the_last() -> None:
    text = json.dumps(quote_dict()).replace(
        '"discount_percent": "10"', '"discount_percent": "10", "discount_percent": "90"'
    )
    [violation] = rejection(text)
    assert 'the key "discount_percent" appears twice' in violation.message


def test_nan_is_not_a_number_a_quote_may_carry() -> None:
    text = json.dumps(quote_dict()).replace('"discount_percent": "10"', '"discount_percent": NaN')
    [violation] = rejection(text)
    assert "NaN is not a number" in violation.message


def test_deeply_nested_json_is_rejected_without_crashing() -> None:
    [violation] = rejection("[" * 200_000 + "]" * 200_000)
    assert violation.pointer == ""


def test_a_field_name_with_a_slash_is_escaped_in_the_pointer() -> None:
    assert pointers(quote_dict(**{"terms/conditions": "net 90"})) == ["/terms~1conditions"]


def test_a_discount_above_one_hundred_percent_is_malformed() -> None:
    raw = quote_dict(lines=[{"sku": "PLATFORM-PRO", "quantity": 5, "discount_percent": "120"}])
    [violation] = rejection(raw)
    assert violation.pointer == "/lines/0/discount_percent"
    assert "at most 100" in violation.message


def test_a_quote_without_lines_is_rejected() -> None:
    assert pointers(quote_dict(lines=[])) == ["/lines"]
