"""Pricing and the invoice schedule (docs/architecture.md), checked against figures by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from qtc.cpq import price_quote, priced_to_json
from qtc.dates import add_months
from qtc.models import Catalog, PricedQuote
from qtc.pricing import reprice_for_signature
from tests.unit.builders import SIGNED, catalog_from_toml, quote_dict, tiny_catalog_toml


def at(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


def dates(priced: PricedQuote) -> list[str]:
    return [invoice.date.isoformat() for invoice in priced.invoices]


def totals(priced: PricedQuote) -> list[int]:
    return [invoice.total_minor for invoice in priced.invoices]


def monthly(**overrides: Any) -> dict[str, Any]:
    return quote_dict(billing_frequency="monthly", term_months=12, **overrides)


def test_the_design_example_prices_to_the_cent(catalog: Catalog) -> None:
    priced = price_quote(quote_dict(), catalog, at("2026-12-15T10:00:00Z"))
    document = priced_to_json(priced)
    assert {
        k: document[k] for k in ("status", "currency", "start_date", "term_start", "term_end")
    } == {
        "status": "ok",
        "currency": "usd",
        "start_date": "2026-12-15",
        "term_start": "2026-12-15",
        "term_end": "2029-12-15",
    }
    pro, impl = document["lines"]
    assert pro["unit_amounts_by_year_minor"] == [129600, 138672, 148379]
    assert pro["discount_percent"] == "10"
    assert "unit_amount_minor" not in pro
    assert (impl["sku"], impl["unit_amount_minor"], impl["auto_added"]) == (
        "IMPL-SERVICES",
        500000,
        True,
    )
    first = document["invoices"][0]
    assert (first["date"], first["period_start"], first["period_end"]) == (
        "2026-12-15",
        "2026-12-15",
        "2027-12-15",
    )
    assert [
        (
            item["sku"],
            item["kind"],
            item["quantity"],
            item["unit_amount_minor"],
            item["amount_minor"],
        )
        for item in first["lines"]
    ] == [
        ("PLATFORM-PRO", "recurring", 50, 129600, 6480000),
        ("IMPL-SERVICES", "one_time", 1, 500000, 500000),
    ]
    assert first["total_minor"] == 6980000
    assert (document["mrr_minor"], document["arr_minor"], document["tcv_minor"]) == (
        540000,
        6480000,
        21332550,
    )
    assert document["first_invoice_total_minor"] == 6980000
    assert totals(priced) == [6980000, 6933600, 7418950]
    assert dates(priced) == ["2026-12-15", "2027-12-15", "2028-12-15"]


def test_monthly_billing_invoices_every_month_in_advance(catalog: Catalog) -> None:
    priced = price_quote(monthly(), catalog, SIGNED)
    assert dates(priced) == [
        f"{y}-{m:02d}-15" for y, m in [(2026, 12)] + [(2027, m) for m in range(1, 12)]
    ]
    assert priced.lines[0].unit_amounts_by_year_minor == [10800]
    assert totals(priced) == [1040000] + [540000] * 11
    assert priced.tcv_minor == 6980000
    assert priced.term_end == date(2027, 12, 15)


def test_quarterly_billing_raises_prices_by_the_uplift_in_year_two(catalog: Catalog) -> None:
    priced = price_quote(quote_dict(billing_frequency="quarterly", term_months=24), catalog, SIGNED)
    assert dates(priced) == [
        "2026-12-15", "2027-03-15", "2027-06-15", "2027-09-15",
        "2027-12-15", "2028-03-15", "2028-06-15", "2028-09-15",
    ]  # fmt: skip
    assert priced.lines[0].unit_amounts_by_year_minor == [32400, 34668]
    assert totals(priced) == [2120000, 1620000, 1620000, 1620000] + [1733400] * 4
    assert priced.tcv_minor == 13913600


def test_monthly_uplift_compounds_at_each_contract_anniversary(catalog: Catalog) -> None:
    priced = price_quote(quote_dict(billing_frequency="monthly"), catalog, SIGNED)
    units = [invoice.lines[0].unit_amount_minor for invoice in priced.invoices]
    assert units == [10800] * 12 + [11556] * 12 + [12365] * 12
    assert priced.invoices[12].date == date(2027, 12, 15)
    assert priced.invoices[24].date == date(2028, 12, 15)


def test_an_eighteen_month_quarterly_term_has_six_invoices_over_two_contract_years(
    flexible_catalog: Catalog,
) -> None:
    priced = price_quote(
        quote_dict(billing_frequency="quarterly", term_months=18), flexible_catalog, SIGNED
    )
    assert priced.lines[0].unit_amounts_by_year_minor == [32400, 34668]
    assert dates(priced) == [
        "2026-12-15",
        "2027-03-15",
        "2027-06-15",
        "2027-09-15",
        "2027-12-15",
        "2028-03-15",
    ]
    assert [invoice.lines[0].unit_amount_minor for invoice in priced.invoices] == [32400] * 4 + [
        34668
    ] * 2
    assert priced.term_end == date(2028, 6, 15)
    assert priced.invoices[-1].period_end == priced.term_end


def test_an_eighteen_month_monthly_term_bills_eighteen_times(flexible_catalog: Catalog) -> None:
    priced = price_quote(
        quote_dict(billing_frequency="monthly", term_months=18), flexible_catalog, SIGNED
    )
    assert len(priced.invoices) == 18
    assert priced.invoices[-1].date == date(2028, 5, 15)
    assert priced.tcv_minor == 12 * 540000 + 6 * 577800 + 500000


def test_first_of_month_anchor_bills_a_prorated_stub_then_full_periods_from_the_first(
    catalog: Catalog,
) -> None:
    priced = price_quote(
        quote_dict(term_months=12, billing_anchor="first_of_month"), catalog, SIGNED
    )
    assert (priced.start_date, priced.term_start, priced.term_end) == (
        date(2026, 12, 15), date(2027, 1, 1), date(2028, 1, 1)
    )  # fmt: skip
    stub_invoice, annual = priced.invoices
    # 108.00 a month x 17 of December's 31 days = 59.2258... -> 59.23 per seat
    assert [(i.kind, i.unit_amount_minor, i.amount_minor) for i in stub_invoice.lines] == [
        ("stub", 5923, 296150),
        ("one_time", 500000, 500000),
    ]
    assert (stub_invoice.period_start, stub_invoice.period_end) == (
        date(2026, 12, 15),
        date(2027, 1, 1),
    )
    assert stub_invoice.lines[0].period_end == date(2027, 1, 1)
    assert (annual.date, annual.total_minor) == (date(2027, 1, 1), 6480000)
    assert priced.first_invoice_total_minor == 796150
    assert priced.tcv_minor == 796150 + 6480000


def test_a_stub_in_a_leap_february_prorates_over_twenty_nine_days(catalog: Catalog) -> None:
    priced = price_quote(
        monthly(billing_anchor="first_of_month"), catalog, at("2028-02-10T09:00:00Z")
    )
    # 108.00 x 20/29 = 74.4827... -> 74.48
    assert priced.invoices[0].lines[0].unit_amount_minor == 7448
    assert priced.invoices[1].date == date(2028, 3, 1)
    assert len(priced.invoices) == 13


def test_first_of_month_anchor_signed_on_the_first_has_no_stub(catalog: Catalog) -> None:
    priced = price_quote(
        monthly(billing_anchor="first_of_month"), catalog, at("2027-03-01T12:00:00Z")
    )
    assert priced.term_start == date(2027, 3, 1)
    assert len(priced.invoices) == 12
    assert {item.kind for item in priced.invoices[0].lines} == {"recurring", "one_time"}


def test_a_term_starting_on_january_31_clamps_each_period_to_month_end(catalog: Catalog) -> None:
    priced = price_quote(monthly(), catalog, at("2027-01-31T12:00:00Z"))
    assert dates(priced) == [
        "2027-01-31", "2027-02-28", "2027-03-31", "2027-04-30", "2027-05-31", "2027-06-30",
        "2027-07-31", "2027-08-31", "2027-09-30", "2027-10-31", "2027-11-30", "2027-12-31",
    ]  # fmt: skip
    assert priced.term_end == date(2028, 1, 31)


def test_a_january_31_start_in_a_leap_year_bills_on_february_29(catalog: Catalog) -> None:
    priced = price_quote(monthly(), catalog, at("2028-01-31T12:00:00Z"))
    assert dates(priced)[:3] == ["2028-01-31", "2028-02-29", "2028-03-31"]


def test_an_annual_term_starting_on_february_29_renews_on_february_28(catalog: Catalog) -> None:
    priced = price_quote(quote_dict(), catalog, at("2028-02-29T12:00:00Z"))
    assert dates(priced) == ["2028-02-29", "2029-02-28", "2030-02-28"]
    assert priced.term_end == date(2031, 2, 28)


def test_add_months_counts_from_the_start_instead_of_chaining() -> None:
    start = date(2027, 1, 31)
    assert add_months(start, 2) == date(2027, 3, 31)
    assert add_months(add_months(start, 1), 1) == date(2027, 3, 28)
    assert add_months(date(2027, 11, 30), 3) == date(2028, 2, 29)
    assert add_months(date(2027, 5, 31), -3) == date(2027, 2, 28)


def test_an_explicit_start_after_the_signature_starts_the_contract_on_that_date(
    catalog: Catalog,
) -> None:
    priced = price_quote(quote_dict(start="2027-02-01"), catalog, SIGNED)
    assert (priced.start_date, priced.term_start, priced.term_end) == (
        date(2027, 2, 1), date(2027, 2, 1), date(2030, 2, 1)
    )  # fmt: skip
    assert priced.invoices[0].date == date(2027, 2, 1)
    assert priced.requested_start == date(2027, 2, 1)


def test_an_explicit_start_before_the_signature_starts_the_contract_on_the_signature_date(
    catalog: Catalog,
) -> None:
    priced = price_quote(quote_dict(start="2026-11-01"), catalog, SIGNED)
    assert priced.start_date == date(2026, 12, 15)


def test_the_start_date_is_the_utc_date_of_a_signature_made_in_another_time_zone(
    catalog: Catalog,
) -> None:
    priced = price_quote(quote_dict(), catalog, at("2026-12-15T23:30:00-08:00"))
    assert priced.start_date == date(2026, 12, 16)
    assert priced.signed_at == datetime(2026, 12, 16, 7, 30, tzinfo=UTC)
    assert priced.signed_at.utcoffset() is not None


def test_a_naive_signature_time_is_taken_as_utc(catalog: Catalog) -> None:
    priced = price_quote(quote_dict(), catalog, datetime(2026, 12, 15, 23, 30))
    assert priced.start_date == date(2026, 12, 15)
    assert priced.signed_at == datetime(2026, 12, 15, 23, 30, tzinfo=UTC)


def test_a_euro_quote_uses_euro_list_prices(catalog: Catalog) -> None:
    priced = price_quote(quote_dict(currency="eur"), catalog, SIGNED)
    assert priced.lines[0].unit_amounts_by_year_minor == [118800, 127116, 136014]
    assert priced.lines[1].unit_amount_minor == 460000
    assert priced.mrr_minor == 495000


def test_a_sterling_quote_uses_sterling_list_prices(catalog: Catalog) -> None:
    priced = price_quote(quote_dict(currency="gbp"), catalog, SIGNED)
    assert priced.lines[0].unit_amounts_by_year_minor == [102600, 109782, 117467]
    assert priced.first_invoice_total_minor == 50 * 102600 + 400000


def test_a_zero_decimal_currency_is_rounded_to_whole_units(tmp_path: Path) -> None:
    skus = """
[[skus]]
code = "APP"
name = "App"
kind = "recurring"
prices = { jpy = "1234" }
max_discount_percent = "10"
hard_max_discount_percent = "10"
"""
    catalog = catalog_from_toml(tmp_path, tiny_catalog_toml(skus, currencies='["jpy"]'))
    raw = monthly(
        currency="jpy",
        uplift_percent="0",
        lines=[{"sku": "APP", "quantity": 3, "discount_percent": "10"}],
    )
    priced = price_quote(raw, catalog, SIGNED)
    # 1234 x 0.9 = 1110.6 yen a month: 1111 per seat, MRR round(3331.8) = 3332
    assert priced.lines[0].unit_amounts_by_year_minor == [1111]
    assert priced.mrr_minor == 3332


def test_amounts_round_half_up_not_to_even(tmp_path: Path) -> None:
    skus = """
[[skus]]
code = "PENNY"
name = "Penny"
kind = "recurring"
prices = { usd = "0.05" }
max_discount_percent = "50"
hard_max_discount_percent = "50"
"""
    catalog = catalog_from_toml(tmp_path, tiny_catalog_toml(skus))
    raw = monthly(
        uplift_percent="0", lines=[{"sku": "PENNY", "quantity": 1, "discount_percent": "50"}]
    )
    assert price_quote(raw, catalog, SIGNED).lines[0].unit_amounts_by_year_minor == [3]


def test_mrr_rounds_each_line_total_while_invoices_round_the_unit_price(tmp_path: Path) -> None:
    skus = """
[[skus]]
code = "APP"
name = "App"
kind = "recurring"
prices = { usd = "9.99" }
max_discount_percent = "15"
hard_max_discount_percent = "15"
"""
    catalog = catalog_from_toml(tmp_path, tiny_catalog_toml(skus))
    raw = monthly(
        uplift_percent="0", lines=[{"sku": "APP", "quantity": 7, "discount_percent": "15"}]
    )
    priced = price_quote(raw, catalog, SIGNED)
    # m = 8.4915: MRR = round(8.4915 x 7) = 59.44; each invoice = round(8.4915) x 7 = 59.43
    assert priced.mrr_minor == 5944
    assert priced.arr_minor == 12 * 5944
    assert priced.invoices[0].total_minor == 5943


def test_repricing_at_the_real_signature_moves_the_dates_and_keeps_the_prices(
    catalog: Catalog,
) -> None:
    quoted = price_quote(
        quote_dict(lines=[{"sku": "PLATFORM-PRO", "quantity": 50, "discount_percent": "25"}]),
        catalog,
        SIGNED,
    )
    signed = reprice_for_signature(quoted, at("2027-01-31T18:00:00+02:00"))
    assert (signed.start_date, signed.term_end) == (date(2027, 1, 31), date(2030, 1, 31))
    assert dates(signed) == ["2027-01-31", "2028-01-31", "2029-01-31"]
    assert signed.lines == quoted.lines
    assert (signed.tcv_minor, signed.mrr_minor) == (quoted.tcv_minor, quoted.mrr_minor)
    assert (signed.status, signed.approvals_needed, signed.adjustments) == (
        quoted.status, quoted.approvals_needed, quoted.adjustments
    )  # fmt: skip
    assert quoted.start_date == date(2026, 12, 15), "the original priced quote is not modified"


def test_repricing_uses_the_prices_the_customer_saw_even_after_the_catalog_changes(
    catalog: Catalog,
) -> None:
    quoted = price_quote(quote_dict(), catalog, SIGNED)
    pro = catalog.sku("PLATFORM-PRO")
    assert pro is not None
    later_catalog = catalog.model_copy(deep=True)
    later_pro = later_catalog.sku("PLATFORM-PRO")
    assert later_pro is not None
    later_pro.prices["usd"] = pro.prices["usd"] * 2
    signed = reprice_for_signature(quoted, at("2027-01-10T00:00:00Z"))
    assert signed.lines[0].unit_amounts_by_year_minor == [129600, 138672, 148379]
    assert (
        price_quote(quote_dict(), later_catalog, at("2027-01-10T00:00:00Z")).tcv_minor
        != signed.tcv_minor
    )


def test_repricing_a_first_of_month_quote_recomputes_the_stub(catalog: Catalog) -> None:
    quoted = price_quote(
        monthly(billing_anchor="first_of_month"), catalog, at("2027-03-01T00:00:00Z")
    )
    signed = reprice_for_signature(quoted, at("2027-03-16T00:00:00Z"))
    assert [i.kind for i in signed.invoices[0].lines] == ["stub", "one_time"]
    # 108.00 x 16/31 = 55.7419... -> 55.74 per seat
    assert signed.invoices[0].lines[0].unit_amount_minor == 5574
    assert signed.term_start == date(2027, 4, 1)
