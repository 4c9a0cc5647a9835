"""CPQ rules (docs/architecture.md): every violation at once, auto-attach, deal-desk approvals."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from qtc.cpq import parse_quote, price_quote
from qtc.errors import QuoteRejected
from qtc.models import Catalog, Violation
from tests.unit.builders import SIGNED, catalog_from_toml, quote_dict, tiny_catalog_toml


def rejected(
    raw: dict[str, Any], catalog: Catalog, signed_at: datetime = SIGNED
) -> list[Violation]:
    with pytest.raises(QuoteRejected) as caught:
        price_quote(raw, catalog, signed_at)
    return caught.value.violations


def codes_at(violations: list[Violation]) -> list[tuple[str, str]]:
    return [(v.pointer, v.code) for v in violations]


def with_policy(catalog: Catalog, **changes: Any) -> Catalog:
    return catalog.model_copy(update={"policy": catalog.policy.model_copy(update=changes)})


def line(sku: str, quantity: int, discount: str = "0") -> dict[str, Any]:
    return {"sku": sku, "quantity": quantity, "discount_percent": discount}


# --- auto-attach ---------------------------------------------------------------------------


def test_a_required_sku_missing_from_the_quote_is_attached_at_no_discount(catalog: Catalog) -> None:
    priced = price_quote(quote_dict(), catalog, SIGNED)
    impl = priced.lines[1]
    assert (impl.sku, impl.kind, impl.quantity) == ("IMPL-SERVICES", "one_time", 1)
    assert impl.discount_percent == Decimal("0")
    assert impl.auto_added is True
    assert impl.reason == "required by PLATFORM-PRO"
    assert [a.model_dump() for a in priced.adjustments] == [
        {"rule": "requires", "sku": "IMPL-SERVICES", "because": "PLATFORM-PRO"}
    ]


def test_a_required_sku_already_on_the_quote_is_left_as_it_is(catalog: Catalog) -> None:
    raw = quote_dict(lines=[line("IMPL-SERVICES", 2, "10"), line("PLATFORM-PRO", 50, "10")])
    priced = price_quote(raw, catalog, SIGNED)
    assert [(pl.sku, pl.quantity, pl.discount_percent, pl.auto_added) for pl in priced.lines] == [
        ("IMPL-SERVICES", 2, Decimal("10"), False),
        ("PLATFORM-PRO", 50, Decimal("10"), False),
    ]
    assert priced.adjustments == []
    assert priced.lines[0].unit_amount_minor == 450000
    assert priced.first_invoice_total_minor == 6480000 + 2 * 450000


def test_requirements_of_an_auto_added_sku_are_attached_too(tmp_path: Path) -> None:
    skus = """
[[skus]]
code = "APP"
name = "App"
kind = "recurring"
prices = { usd = "10.00" }
requires = [{ sku = "SETUP", quantity = 1 }]
[[skus]]
code = "SETUP"
name = "Setup"
kind = "one_time"
prices = { usd = "100.00" }
requires = [{ sku = "TRAINING", quantity = 2 }]
[[skus]]
code = "TRAINING"
name = "Training"
kind = "one_time"
prices = { usd = "50.00" }
max_quantity = 5
"""
    catalog = catalog_from_toml(tmp_path, tiny_catalog_toml(skus))
    priced = price_quote(quote_dict(lines=[line("APP", 3)]), catalog, SIGNED)
    assert [(pl.sku, pl.quantity, pl.reason) for pl in priced.lines] == [
        ("APP", 3, None),
        ("SETUP", 1, "required by APP"),
        ("TRAINING", 2, "required by SETUP"),
    ]
    assert [(a.sku, a.because) for a in priced.adjustments] == [
        ("SETUP", "APP"),
        ("TRAINING", "SETUP"),
    ]


def test_a_required_sku_without_a_price_in_the_quote_currency_rejects_the_requiring_line(
    tmp_path: Path,
) -> None:
    skus = """
[[skus]]
code = "APP"
name = "App"
kind = "recurring"
prices = { usd = "10.00", eur = "9.00" }
requires = [{ sku = "SETUP", quantity = 1 }]
[[skus]]
code = "SETUP"
name = "Setup"
kind = "one_time"
prices = { usd = "100.00" }
"""
    catalog = catalog_from_toml(tmp_path, tiny_catalog_toml(skus, currencies='["usd", "eur"]'))
    [violation] = rejected(quote_dict(currency="eur", lines=[line("APP", 1)]), catalog)
    assert codes_at([violation]) == [("/lines/0/sku", "currency_not_supported")]
    assert violation.message == "APP requires SETUP, which has no eur price"


def test_feature_limits_written_quantity_take_the_line_quantity(catalog: Catalog) -> None:
    priced = price_quote(quote_dict(), catalog, SIGNED)
    assert priced.lines[0].features == {"sso": True, "audit_log": True, "seats": 50}


# --- approvals -----------------------------------------------------------------------------


def test_a_discount_above_the_rep_limit_but_within_the_hard_max_needs_deal_desk_approval(
    catalog: Catalog,
) -> None:
    priced = price_quote(quote_dict(lines=[line("PLATFORM-PRO", 50, "25")]), catalog, SIGNED)
    assert priced.status == "needs_approval"
    [approval] = priced.approvals_needed
    assert approval.pointer == "/lines/0/discount_percent"
    assert approval.sku == "PLATFORM-PRO"
    assert (approval.discount_percent, approval.max_discount_percent) == (Decimal(25), Decimal(20))
    assert "deal desk" in approval.message
    assert priced.lines[0].unit_amounts_by_year_minor == [108000, 115560, 123649]


@pytest.mark.parametrize(
    ("discount", "status"), [("20", "ok"), ("20.01", "needs_approval"), ("40", "needs_approval")]
)
def test_the_approval_limits_are_inclusive(catalog: Catalog, discount: str, status: str) -> None:
    priced = price_quote(quote_dict(lines=[line("PLATFORM-PRO", 50, discount)]), catalog, SIGNED)
    assert priced.status == status


def test_a_quote_within_every_limit_is_ok_with_no_approvals(catalog: Catalog) -> None:
    priced = price_quote(quote_dict(), catalog, SIGNED)
    assert (priced.status, priced.approvals_needed) == ("ok", [])


# --- one test per violation code -------------------------------------------------------------


def test_a_discount_above_the_hard_max_is_rejected(catalog: Catalog) -> None:
    [violation] = rejected(quote_dict(lines=[line("PLATFORM-PRO", 50, "40.01")]), catalog)
    assert codes_at([violation]) == [("/lines/0/discount_percent", "discount_above_hard_max")]
    assert violation.message == "40.01% off PLATFORM-PRO is above its hard maximum of 40%"


def test_an_unknown_sku_is_rejected(catalog: Catalog) -> None:
    raw = quote_dict(lines=[line("PLATFORM-PRO", 50), line("PLATFORM-ULTRA", 1)])
    assert codes_at(rejected(raw, catalog)) == [("/lines/1/sku", "unknown_sku")]


@pytest.mark.parametrize(
    ("lines", "pointer"),
    [
        ([line("PLATFORM-PRO", 4)], "/lines/0/quantity"),
        ([line("PLATFORM-PRO", 10001)], "/lines/0/quantity"),
        ([line("PLATFORM-PRO", 50), line("SUPPORT-PREMIUM", 2)], "/lines/1/quantity"),
    ],
)
def test_a_quantity_outside_the_sku_limits_is_out_of_range(
    catalog: Catalog, lines: list[dict[str, Any]], pointer: str
) -> None:
    [violation] = rejected(quote_dict(lines=lines), catalog)
    assert codes_at([violation]) == [(pointer, "quantity_out_of_range")]
    assert f"the quote has {lines[-1]['quantity']}" in violation.message


def test_the_same_sku_on_two_lines_is_a_duplicate(catalog: Catalog) -> None:
    raw = quote_dict(
        lines=[line("PLATFORM-PRO", 50), line("SUPPORT-PREMIUM", 1), line("PLATFORM-PRO", 5)]
    )
    [violation] = rejected(raw, catalog)
    assert codes_at([violation]) == [("/lines/2/sku", "duplicate_sku")]
    assert "already on line 0" in violation.message


def test_a_duplicate_line_is_still_checked_against_every_rule(catalog: Catalog) -> None:
    raw = quote_dict(
        lines=[line("PLATFORM-PRO", 50), line("PLATFORM-PRO", 3, "45"), line("SUPPORT-PREMIUM", 1)]
    )
    assert codes_at(rejected(raw, catalog)) == [
        ("/lines/1/sku", "duplicate_sku"),
        ("/lines/1/quantity", "quantity_out_of_range"),
        ("/lines/1/discount_percent", "discount_above_hard_max"),
    ]


def test_a_duplicate_line_is_checked_for_exclusions_like_any_line(catalog: Catalog) -> None:
    raw = quote_dict(
        lines=[
            line("PLATFORM-STARTER", 10),
            line("SUPPORT-PREMIUM", 1),
            line("PLATFORM-STARTER", 60),
        ]
    )
    assert codes_at(rejected(raw, catalog)) == [
        ("/lines/2/sku", "duplicate_sku"),
        ("/lines/2/quantity", "quantity_out_of_range"),
    ]
    raw = quote_dict(
        lines=[line("PLATFORM-PRO", 50), line("PLATFORM-STARTER", 10), line("PLATFORM-PRO", 5)]
    )
    assert codes_at(rejected(raw, catalog)) == [
        ("/lines/1/sku", "excluded_sku"),
        ("/lines/2/sku", "duplicate_sku"),
        ("/lines/2/sku", "excluded_sku"),
    ]


def test_a_duplicate_line_in_a_currency_its_sku_lacks_is_reported_too(catalog: Catalog) -> None:
    raw = quote_dict(currency="gbp", lines=[line("ANALYTICS-ADDON", 5), line("ANALYTICS-ADDON", 6)])
    assert codes_at(rejected(raw, catalog)) == [
        ("/lines/0/sku", "currency_not_supported"),
        ("/lines/1/sku", "duplicate_sku"),
        ("/lines/1/sku", "currency_not_supported"),
    ]


@pytest.mark.parametrize(
    "order", [["PLATFORM-PRO", "PLATFORM-STARTER"], ["PLATFORM-STARTER", "PLATFORM-PRO"]]
)
def test_mutually_exclusive_skus_are_rejected_once_on_the_later_line(
    catalog: Catalog, order: list[str]
) -> None:
    raw = quote_dict(lines=[line(order[0], 10), line(order[1], 10)])
    [violation] = rejected(raw, catalog)
    assert codes_at([violation]) == [("/lines/1/sku", "excluded_sku")]
    assert violation.message == f"{order[1]} cannot be sold together with {order[0]}"


def test_an_auto_added_sku_excluded_by_another_line_is_reported_on_the_line_that_required_it(
    tmp_path: Path,
) -> None:
    skus = """
[[skus]]
code = "APP"
name = "App"
kind = "recurring"
prices = { usd = "10.00" }
requires = [{ sku = "LEGACY-CONNECTOR", quantity = 1 }]
[[skus]]
code = "LEGACY-CONNECTOR"
name = "Legacy connector"
kind = "one_time"
prices = { usd = "10.00" }
[[skus]]
code = "CLOUD"
name = "Cloud"
kind = "recurring"
prices = { usd = "10.00" }
excludes = ["LEGACY-CONNECTOR"]
"""
    catalog = catalog_from_toml(tmp_path, tiny_catalog_toml(skus))
    [violation] = rejected(quote_dict(lines=[line("CLOUD", 1), line("APP", 1)]), catalog)
    assert codes_at([violation]) == [("/lines/1/sku", "excluded_sku")]
    assert (
        violation.message == "LEGACY-CONNECTOR (required by APP) cannot be sold together with CLOUD"
    )


def test_a_currency_outside_the_policy_is_not_supported(catalog: Catalog) -> None:
    [violation] = rejected(quote_dict(currency="chf"), catalog)
    assert codes_at([violation]) == [("/currency", "currency_not_supported")]
    assert violation.message == "quotes are not sold in chf; allowed: usd, eur, gbp"


def test_a_sku_without_a_price_in_the_quote_currency_is_not_supported(catalog: Catalog) -> None:
    raw = quote_dict(currency="gbp", lines=[line("PLATFORM-PRO", 50), line("ANALYTICS-ADDON", 10)])
    [violation] = rejected(raw, catalog)
    assert codes_at([violation]) == [("/lines/1/sku", "currency_not_supported")]
    assert violation.message == "ANALYTICS-ADDON has no gbp price"


def test_a_term_outside_the_policy_is_not_allowed(catalog: Catalog) -> None:
    assert codes_at(rejected(quote_dict(term_months=30, billing_frequency="monthly"), catalog)) == [
        ("/term_months", "term_not_allowed")
    ]


def test_a_billing_frequency_outside_the_policy_is_not_allowed(catalog: Catalog) -> None:
    annual_only = with_policy(catalog, billing_frequencies=["annual"])
    [violation] = rejected(quote_dict(billing_frequency="monthly"), annual_only)
    assert codes_at([violation]) == [("/billing_frequency", "frequency_not_allowed")]


def test_an_eighteen_month_term_cannot_be_billed_annually(flexible_catalog: Catalog) -> None:
    [violation] = rejected(quote_dict(term_months=18), flexible_catalog)
    assert codes_at([violation]) == [("/term_months", "term_not_multiple_of_period")]
    assert violation.message == (
        "a term of 18 months cannot be billed annually: "
        "it is not a whole number of 12-month periods"
    )


def test_an_uplift_above_the_policy_maximum_is_out_of_policy(catalog: Catalog) -> None:
    [violation] = rejected(quote_dict(uplift_percent="10.5"), catalog)
    assert codes_at([violation]) == [("/uplift_percent", "uplift_out_of_policy")]


def test_the_policy_default_uplift_applies_when_the_quote_names_none(catalog: Catalog) -> None:
    raw = quote_dict()
    del raw["uplift_percent"]
    priced = price_quote(raw, catalog, SIGNED)
    assert priced.uplift_percent == Decimal("7")
    assert priced.lines[0].unit_amounts_by_year_minor == [129600, 138672, 148379]


def test_payment_terms_outside_the_policy_are_not_allowed(catalog: Catalog) -> None:
    assert codes_at(rejected(quote_dict(payment_terms_days=90), catalog)) == [
        ("/payment_terms_days", "payment_terms_not_allowed")
    ]


def test_a_quote_signed_after_its_valid_until_day_is_expired(catalog: Catalog) -> None:
    raw = quote_dict(valid_until="2026-12-15")
    [violation] = rejected(raw, catalog, datetime(2026, 12, 16, 0, 0, tzinfo=UTC))
    assert codes_at([violation]) == [("/valid_until", "quote_expired")]
    assert (
        violation.message
        == "the quote was valid until 2026-12-15 and cannot be signed on 2026-12-16"
    )


def test_a_quote_signed_late_on_its_valid_until_day_in_utc_is_still_valid(catalog: Catalog) -> None:
    priced = price_quote(
        quote_dict(valid_until="2026-12-15"), catalog, datetime(2026, 12, 15, 23, 59, tzinfo=UTC)
    )
    assert priced.start_date.isoformat() == "2026-12-15"


def test_expiry_is_judged_on_the_utc_date_of_the_signature(catalog: Catalog) -> None:
    evening_in_new_york = datetime.fromisoformat("2026-12-15T20:00:00-05:00")
    assert codes_at(
        rejected(quote_dict(valid_until="2026-12-15"), catalog, evening_in_new_york)
    ) == [("/valid_until", "quote_expired")]


def test_a_quote_with_only_one_time_lines_is_a_services_order(catalog: Catalog) -> None:
    raw = quote_dict(term_months=12, lines=[line("IMPL-SERVICES", 2)])
    priced = price_quote(raw, catalog, SIGNED)
    assert priced.status == "ok"
    assert (priced.mrr_minor, priced.arr_minor) == (0, 0)
    [invoice] = priced.invoices
    assert invoice.date.isoformat() == "2026-12-15"
    assert [
        (item.sku, item.kind, item.unit_amount_minor, item.amount_minor) for item in invoice.lines
    ] == [("IMPL-SERVICES", "one_time", 500000, 1000000)]
    assert priced.tcv_minor == priced.first_invoice_total_minor == 1000000
    assert priced.term_end.isoformat() == "2027-12-15"


def test_a_services_order_is_still_held_to_the_term_policy(catalog: Catalog) -> None:
    raw = quote_dict(term_months=18, lines=[line("IMPL-SERVICES", 1)])
    assert codes_at(rejected(raw, catalog)) == [
        ("/term_months", "term_not_allowed"),
        ("/term_months", "term_not_multiple_of_period"),
    ]


def test_every_violation_of_a_bad_quote_is_reported_at_once_in_document_order(
    catalog: Catalog,
) -> None:
    raw = quote_dict(
        term_months=18,
        payment_terms_days=90,
        uplift_percent="12",
        valid_until="2026-01-31",
        lines=[
            line("PLATFORM-PRO", 3, "55"),
            line("PLATFORM-STARTER", 10),
            line("PLATFORM-ULTRA", 1),
        ],
    )
    assert codes_at(rejected(raw, catalog)) == [
        ("/term_months", "term_not_allowed"),
        ("/term_months", "term_not_multiple_of_period"),
        ("/payment_terms_days", "payment_terms_not_allowed"),
        ("/uplift_percent", "uplift_out_of_policy"),
        ("/valid_until", "quote_expired"),
        ("/lines/0/quantity", "quantity_out_of_range"),
        ("/lines/0/discount_percent", "discount_above_hard_max"),
        ("/lines/1/sku", "excluded_sku"),
        ("/lines/2/sku", "unknown_sku"),
    ]


def test_a_rejection_message_lists_every_violation(catalog: Catalog) -> None:
    with pytest.raises(QuoteRejected) as caught:
        price_quote(quote_dict(payment_terms_days=90, uplift_percent="12"), catalog, SIGNED)
    assert str(caught.value).startswith("/payment_terms_days: payment_terms_not_allowed: ")
    assert "/uplift_percent: uplift_out_of_policy: " in str(caught.value)


def test_a_malformed_quote_is_rejected_by_price_quote_too(catalog: Catalog) -> None:
    [violation] = rejected(quote_dict(lines=[line("PLATFORM-PRO", -5)]), catalog)
    assert codes_at([violation]) == [("/lines/0/quantity", "invalid_field")]


def test_a_parsed_quote_object_prices_like_its_json(catalog: Catalog) -> None:
    raw = quote_dict()
    assert price_quote(parse_quote(raw), catalog, SIGNED) == price_quote(raw, catalog, SIGNED)
