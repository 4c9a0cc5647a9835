"""Amendments (docs/architecture.md, "Amendments"): the co-termed proration arithmetic, its rules,
and properties that hold for every amendment, checked against a reference written from the text."""

from __future__ import annotations

import calendar
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from qtc.amendments import (
    amended_contract,
    amendment_to_json,
    contract_periods,
    original_from_json,
    parse_amendment,
    price_amendment,
    schedule_amendment,
)
from qtc.cpq import price_quote, priced_to_json
from qtc.errors import QuoteRejected
from qtc.models import PERIOD_MONTHS, Catalog, PricedQuote, Violation
from tests.unit.builders import SIGNED, quote_dict
from tests.unit.test_pricing_properties import PROPERTY_SETTINGS, quotes

AMENDED_AT = datetime(2027, 6, 15, 9, 0, tzinfo=UTC)


def amendment(lines: list[dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "quote_id": "Q-1001-A1",
        "opportunity_id": "006000000000002AAA",
        "amends": "deal-006000000000001AAA",
        "signer": {"name": "Jane Doe", "email": "jane@acme.example"},
        "valid_until": "2030-12-31",
        "lines": lines,
    }
    doc.update(overrides)
    return doc


def add(sku: str, quantity: int, discount: str | None = None) -> dict[str, Any]:
    line: dict[str, Any] = {"sku": sku, "quantity": quantity}
    if discount is not None:
        line["discount_percent"] = discount
    return line


@pytest.fixture
def original(catalog: Catalog) -> PricedQuote:
    """The documented deal: 36 months, annual, 50 PLATFORM-PRO at 10% off, 7% uplift."""
    return price_quote(quote_dict(), catalog, SIGNED)


def rejected(
    doc: dict[str, Any], original: PricedQuote, catalog: Catalog, at: datetime = AMENDED_AT
) -> list[tuple[str, str]]:
    with pytest.raises(QuoteRejected) as caught:
        price_amendment(doc, original, catalog, at)
    return [(v.pointer, v.code) for v in caught.value.violations]


# --- the documented example -------------------------------------------------------------


def test_ten_more_seats_mid_year_are_prorated_by_day_and_billed_from_the_next_period(
    original: PricedQuote, catalog: Catalog
) -> None:
    priced = price_amendment(amendment([add("PLATFORM-PRO", 10)]), original, catalog, AMENDED_AT)
    doc = amendment_to_json(priced)
    assert doc["status"] == "ok"
    assert doc["effective_date"] == "2027-06-15"
    assert doc["current_period"] == {"start": "2026-12-15", "end": "2027-12-15"}
    [line] = doc["lines"]
    assert (line["sku"], line["quantity_added"], line["quantity_after"], line["new_line"]) == (
        "PLATFORM-PRO",
        10,
        60,
        False,
    )
    assert line["unit_amounts_by_year_minor"] == [129600, 138672, 148379]
    first, *later = doc["invoices"]
    # 1,296.00 x 183 / 365 = 649.7753... -> 649.78 a seat
    assert first == {
        "date": "2027-06-15",
        "period_start": "2027-06-15",
        "period_end": "2027-12-15",
        "lines": [
            {
                "sku": "PLATFORM-PRO",
                "kind": "proration",
                "quantity": 10,
                "unit_amount_minor": 64978,
                "amount_minor": 649780,
                "period_start": "2027-06-15",
                "period_end": "2027-12-15",
            }
        ],
        "total_minor": 649780,
    }
    assert [(i["date"], i["lines"][0]["quantity"], i["total_minor"]) for i in later] == [
        ("2027-12-15", 60, 60 * 138672),
        ("2028-12-15", 60, 60 * 148379),
    ]
    assert doc["mrr_delta_minor"] == 108000  # round(108.00 x 10)
    assert doc["arr_delta_minor"] == 12 * 108000
    assert doc["tcv_delta_minor"] == 649780 + 10 * 138672 + 10 * 148379
    assert doc["first_invoice_total_minor"] == 649780


def test_a_new_sku_is_priced_from_the_catalog_under_the_originals_terms(
    original: PricedQuote, catalog: Catalog
) -> None:
    priced = price_amendment(
        amendment([add("ANALYTICS-ADDON", 20, "5"), add("IMPL-SERVICES", 1)]),
        original,
        catalog,
        AMENDED_AT,
    )
    analytics, impl = priced.lines
    assert analytics.new_line and analytics.quantity_after == 20
    # m = 25.00 x 0.95 = 23.75; annual: 285.00, then x 1.07 and x 1.07^2
    assert analytics.unit_amounts_by_year_minor == [28500, 30495, 32630]
    assert analytics.features == {"analytics": True, "analytics_seats": 20}
    # A one-time SKU already on the original is charged again at the original's unit price.
    assert (impl.new_line, impl.quantity_after, impl.unit_amount_minor) == (False, 2, 500000)
    first = priced.invoices[0]
    assert [(i.sku, i.kind, i.unit_amount_minor, i.amount_minor) for i in first.lines] == [
        ("ANALYTICS-ADDON", "proration", 14289, 285780),  # 285.00 x 183 / 365 = 142.890...
        ("IMPL-SERVICES", "one_time", 500000, 500000),
    ]
    # Later invoices: the original's lines, then the new SKU, each at its own year price.
    assert [(i.sku, i.quantity, i.unit_amount_minor) for i in priced.invoices[1].lines] == [
        ("PLATFORM-PRO", 50, 138672),
        ("ANALYTICS-ADDON", 20, 30495),
    ]
    assert priced.mrr_delta_minor == 47500
    assert priced.tcv_delta_minor == 285780 + 500000 + 20 * (30495 + 32630)


def test_a_proration_that_lands_on_half_a_cent_rounds_up(catalog: Catalog) -> None:
    # Monthly, GBP: PLATFORM-PRO at 5% off is 90.25 a month; 14 of February's 28 days remain.
    raw = quote_dict(
        currency="gbp",
        billing_frequency="monthly",
        term_months=12,
        lines=[add("PLATFORM-PRO", 25, "5")],
    )
    base = price_quote(raw, catalog, datetime(2027, 1, 15, tzinfo=UTC))
    priced = price_amendment(
        amendment([add("PLATFORM-PRO", 10)]), base, catalog, datetime(2027, 3, 1, tzinfo=UTC)
    )
    assert (priced.current_period.start, priced.current_period.end) == (
        date(2027, 2, 15),
        date(2027, 3, 15),
    )
    assert priced.invoices[0].lines[0].unit_amount_minor == 4513  # 45.125 -> 45.13


def test_an_amendment_in_the_stub_period_prorates_the_stub(catalog: Catalog) -> None:
    raw = quote_dict(billing_anchor="first_of_month", billing_frequency="quarterly", term_months=12)
    base = price_quote(raw, catalog, datetime(2027, 1, 10, tzinfo=UTC))
    assert (base.start_date, base.term_start) == (date(2027, 1, 10), date(2027, 2, 1))
    priced = price_amendment(
        amendment([add("PLATFORM-PRO", 4)]), base, catalog, datetime(2027, 1, 20, tzinfo=UTC)
    )
    assert (priced.current_period.start, priced.current_period.end) == (
        date(2027, 1, 10),
        date(2027, 2, 1),
    )
    # U = round(108 x 22 / 31) = 76.65; r / p = 12 / 22 -> 41.809... -> 41.81
    assert priced.invoices[0].lines[0].unit_amount_minor == 4181
    assert [i.date for i in priced.invoices[1:]] == [
        date(2027, 2, 1),
        date(2027, 5, 1),
        date(2027, 8, 1),
        date(2027, 11, 1),
    ]


def test_only_one_time_lines_still_list_the_later_invoices(
    original: PricedQuote, catalog: Catalog
) -> None:
    priced = price_amendment(amendment([add("IMPL-SERVICES", 2)]), original, catalog, AMENDED_AT)
    assert [i.total_minor for i in priced.invoices] == [1000000, 50 * 138672, 50 * 148379]
    assert (priced.mrr_delta_minor, priced.tcv_delta_minor) == (0, 1000000)


def test_a_missing_required_sku_is_added_and_an_excluded_one_refused(catalog: Catalog) -> None:
    base = price_quote(quote_dict(lines=[add("ANALYTICS-ADDON", 10)]), catalog, SIGNED)
    priced = price_amendment(amendment([add("PLATFORM-PRO", 5)]), base, catalog, AMENDED_AT)
    assert [(line.sku, line.auto_added, line.reason) for line in priced.lines] == [
        ("PLATFORM-PRO", False, None),
        ("IMPL-SERVICES", True, "required by PLATFORM-PRO"),
    ]
    assert [(a.sku, a.because) for a in priced.adjustments] == [("IMPL-SERVICES", "PLATFORM-PRO")]
    pro = price_quote(quote_dict(), catalog, SIGNED)
    assert rejected(amendment([add("PLATFORM-STARTER", 5)]), pro, catalog) == [
        ("/lines/0/sku", "excluded_sku")
    ]


def test_a_discount_above_the_reps_limit_on_a_new_sku_needs_approval(
    original: PricedQuote, catalog: Catalog
) -> None:
    priced = price_amendment(
        amendment([add("ANALYTICS-ADDON", 5, "20")]), original, catalog, AMENDED_AT
    )
    assert priced.status == "needs_approval"
    assert [a.pointer for a in priced.approvals_needed] == ["/lines/0/discount_percent"]


# --- rules ------------------------------------------------------------------------------


def test_fields_the_original_owns_are_refused(original: PricedQuote, catalog: Catalog) -> None:
    doc = amendment([add("PLATFORM-PRO", 1)], currency="eur", term_months=12, notes="free")
    assert rejected(doc, original, catalog) == [
        ("/currency", "amendment_field_not_allowed"),
        ("/term_months", "amendment_field_not_allowed"),
        ("/notes", "amendment_field_not_allowed"),
    ]


def test_every_line_rule_is_reported_at_once(original: PricedQuote, catalog: Catalog) -> None:
    doc = amendment(
        [
            add("PLATFORM-PRO", 0),
            add("PLATFORM-PRO", 10, "10"),
            add("SUPPORT-PREMIUM", 2),
            add("ANALYTICS-ADDON", 5, "31"),
            add("NOPE", 1),
        ],
        payment_terms_days=90,
        valid_until="2027-06-14",
    )
    assert rejected(doc, original, catalog) == [
        ("/payment_terms_days", "payment_terms_not_allowed"),
        ("/valid_until", "quote_expired"),
        ("/lines/0/quantity", "quantity_out_of_range"),
        ("/lines/1/sku", "duplicate_sku"),
        ("/lines/1/discount_percent", "amendment_field_not_allowed"),
        ("/lines/2/quantity", "quantity_out_of_range"),  # 0 + 2 above its maximum of 1
        ("/lines/3/discount_percent", "discount_above_hard_max"),
        ("/lines/4/sku", "unknown_sku"),
    ]


def test_a_quantity_after_above_the_maximum_is_out_of_range(catalog: Catalog) -> None:
    base = price_quote(
        quote_dict(lines=[add("PLATFORM-STARTER", 45)]), catalog, datetime(2027, 1, 1, tzinfo=UTC)
    )
    assert rejected(amendment([add("PLATFORM-STARTER", 6)]), base, catalog) == [
        ("/lines/0/quantity", "quantity_out_of_range")
    ]


def test_a_new_sku_without_a_price_in_the_contract_currency_is_refused(catalog: Catalog) -> None:
    base = price_quote(quote_dict(currency="gbp"), catalog, SIGNED)
    assert rejected(amendment([add("ANALYTICS-ADDON", 5)]), base, catalog) == [
        ("/lines/0/sku", "currency_not_supported")
    ]


@pytest.mark.parametrize(
    "at", [datetime(2029, 12, 15, tzinfo=UTC), datetime(2026, 12, 14, 23, 59, tzinfo=UTC)]
)
def test_a_signature_outside_the_term_is_refused(
    original: PricedQuote, catalog: Catalog, at: datetime
) -> None:
    assert rejected(amendment([add("PLATFORM-PRO", 1)]), original, catalog, at) == [
        ("", "amendment_outside_term")
    ]


def test_missing_fields_are_invalid() -> None:
    with pytest.raises(QuoteRejected) as caught:
        parse_amendment(b'{"quote_id": "Q", "lines": []}')
    pointers = {(v.pointer, v.code) for v in caught.value.violations}
    assert ("/amends", "invalid_field") in pointers
    assert ("/lines", "invalid_field") in pointers


# --- properties -------------------------------------------------------------------------


def _half_up(value: Fraction) -> int:
    """Round a non-negative amount in minor units half-up, as an invoice reader does."""
    return int(value + Fraction(1, 2))


def _add_months(d: date, months: int) -> date:
    index = d.year * 12 + d.month - 1 + months
    year, month = divmod(index, 12)
    return date(year, month + 1, min(d.day, calendar.monthrange(year, month + 1)[1]))


def reference(
    original: PricedQuote, lines: list[dict[str, Any]], effective: date
) -> dict[str, Any]:
    """Section by section from the text, in exact fractions: existing SKUs only, no discount."""
    months = PERIOD_MONTHS[original.billing_frequency]
    periods: list[tuple[date, date, int | None]] = []
    if original.start_date != original.term_start:
        periods.append((original.start_date, original.term_start, None))
    for i in range(original.term_months // months):
        start = _add_months(original.term_start, i * months)
        periods.append(
            (start, _add_months(original.term_start, (i + 1) * months), i * months // 12)
        )
    p0, p1, year = next(p for p in periods if p[0] <= effective < p[1])
    by_sku = {line.sku: line for line in original.lines}
    growth = 1 + Fraction(original.uplift_percent) / 100
    proration_total = later = mrr = 0
    for change in lines:
        line = by_sku[change["sku"]]
        m = Fraction(line.list_price) * (1 - Fraction(line.discount_percent) / 100) * 100
        if line.kind == "one_time":
            proration_total += _half_up(m) * change["quantity"]
            continue
        if year is None:
            days = calendar.monthrange(p0.year, p0.month)[1]
            unit = _half_up(m * (p1 - p0).days / days)
        else:
            unit = _half_up(m * months * growth**year)
        proration_total += (
            _half_up(Fraction(unit * (p1 - effective).days, (p1 - p0).days)) * (change["quantity"])
        )
        mrr += _half_up(m * change["quantity"])
        for start, _end, k in periods:
            if k is not None and start >= p1:
                later += _half_up(m * months * growth**k) * change["quantity"]
    return {
        "current_period": (p0, p1),
        "first": proration_total,
        "tcv_delta": proration_total + later,
        "mrr_delta": mrr,
    }


@st.composite
def amendments(
    draw: st.DrawFn, catalog: Catalog
) -> tuple[PricedQuote, list[dict[str, Any]], datetime]:
    raw = draw(quotes())
    signed = datetime(2027, 3, 1, tzinfo=UTC) + timedelta(days=draw(st.integers(0, 700)))
    base = price_quote(raw, catalog, signed)
    changes = []
    for line in base.lines:
        sku = catalog.sku(line.sku)
        assert sku is not None
        room = sku.max_quantity - line.quantity
        if room > 0 and draw(st.booleans()):
            changes.append({"sku": line.sku, "quantity": draw(st.integers(1, min(room, 40)))})
    span = (base.term_end - base.start_date).days
    effective = base.start_date + timedelta(days=draw(st.integers(0, span - 1)))
    at = datetime.combine(effective, datetime.min.time(), tzinfo=UTC) + timedelta(
        hours=draw(st.integers(0, 23))
    )
    return base, changes, at


@PROPERTY_SETTINGS
@given(data=st.data())
def test_amendment_arithmetic_matches_a_reference_and_its_invariants(
    flexible_catalog: Catalog, data: st.DataObject
) -> None:
    catalog = flexible_catalog
    base, changes, at = data.draw(amendments(catalog))
    if not changes:
        return
    doc = amendment(changes, valid_until="2040-12-31")
    priced = price_amendment(doc, base, catalog, at)
    effective = at.date()
    expected = reference(base, changes, effective)
    assert (priced.current_period.start, priced.current_period.end) == expected["current_period"]
    assert priced.first_invoice_total_minor == expected["first"]
    assert priced.tcv_delta_minor == expected["tcv_delta"]
    assert priced.mrr_delta_minor == expected["mrr_delta"]
    assert priced.arr_delta_minor == 12 * expected["mrr_delta"]

    first, *later = priced.invoices
    p1 = priced.current_period.end
    assert (first.date, first.period_start, first.period_end) == (effective, effective, p1)
    # A proration never exceeds the full current period.
    for item in first.lines:
        if item.kind == "proration":
            line = next(line for line in priced.lines if line.sku == item.sku)
            period = next(p for p in contract_periods(base) if p.start <= effective < p.end)
            full = next(
                i.unit_amount_minor
                for inv in base.invoices
                for i in inv.lines
                if inv.period_start == period.start and i.sku == item.sku
            )
            assert 0 <= item.unit_amount_minor <= full
            assert line.quantity_added == item.quantity
    # The later invoices are the original's from P1 on; each grows by the added quantity at the
    # contracted price, and those growths sum to the TCV delta beyond the amendment invoice.
    before = [inv for inv in base.invoices if inv.date >= p1]
    assert [inv.date for inv in later] == [inv.date for inv in before]
    growth = sum(a.total_minor - b.total_minor for a, b in zip(later, before, strict=True))
    assert growth == priced.tcv_delta_minor - first.total_minor
    added = {c["sku"]: c["quantity"] for c in changes}
    for after_inv, before_inv in zip(later, before, strict=True):
        for a, b in zip(after_inv.lines, before_inv.lines, strict=True):
            assert a.unit_amount_minor == b.unit_amount_minor
            assert a.quantity == b.quantity + added.get(a.sku, 0)
    # Re-dated without the catalog, at the same moment, it is the same amendment.
    assert schedule_amendment(priced, base, at) == priced
    # The contract after the amendment keeps TCV = the sum of its invoices.
    contract = amended_contract(base, priced)
    assert contract.tcv_minor == sum(inv.total_minor for inv in contract.invoices)


# --- entry points -----------------------------------------------------------------------


def test_cli_prices_an_amendment_against_the_original_as_signed(
    tmp_path: Path, original: PricedQuote
) -> None:
    from starters.cli import app

    (tmp_path / "original.json").write_text(json.dumps(priced_to_json(original)))
    (tmp_path / "amend.json").write_text(json.dumps(amendment([add("PLATFORM-PRO", 10)])))
    args = ["quote", "price", str(tmp_path / "amend.json"), "--signed-at", "2027-06-15T09:00:00Z"]
    result = CliRunner().invoke(
        app, [*args, "--original", str(tmp_path / "original.json"), "--json"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) >= {
        "status",
        "amends",
        "currency",
        "effective_date",
        "current_period",
        "lines",
        "invoices",
        "mrr_delta_minor",
        "arr_delta_minor",
        "tcv_delta_minor",
        "first_invoice_total_minor",
    }
    assert doc["first_invoice_total_minor"] == 649780
    assert set(doc["lines"][0]) >= {
        "sku",
        "kind",
        "quantity_added",
        "quantity_after",
        "new_line",
        "unit_amounts_by_year_minor",
    }
    without = CliRunner().invoke(app, args)
    assert without.exit_code == 1
    assert "--original" in without.stderr
    late = CliRunner().invoke(
        app,
        [
            "quote",
            "price",
            str(tmp_path / "amend.json"),
            "--original",
            str(tmp_path / "original.json"),
            "--signed-at",
            "2030-01-01T00:00:00Z",
            "--json",
        ],
    )
    assert late.exit_code == 2
    assert json.loads(late.stdout)["errors"][0]["code"] == "amendment_outside_term"


def test_the_original_may_be_a_deal_status_document(original: PricedQuote) -> None:
    status = {"deal_id": "deal-x", "priced_quote": priced_to_json(original)}
    assert original_from_json(json.dumps(status)) == original


def test_violation_codes_include_the_amendment_codes() -> None:
    for code in ("amendment_outside_term", "amendment_field_not_allowed", "original_not_billed"):
        Violation.model_validate({"pointer": "", "code": code, "message": "x"})


def test_an_original_with_only_the_published_figures_prices_the_same(catalog: Catalog) -> None:
    raw = quote_dict(
        uplift_percent="7.25",
        billing_frequency="monthly",
        lines=[add("ANALYTICS-ADDON", 7, "3.5"), add("PLATFORM-PRO", 9)],
    )
    original = price_quote(raw, catalog, SIGNED)
    published = {
        "status",
        "currency",
        "start_date",
        "term_start",
        "term_end",
        "lines",
        "invoices",
        "mrr_minor",
        "arr_minor",
        "tcv_minor",
        "first_invoice_total_minor",
    }
    slim = {k: v for k, v in priced_to_json(original).items() if k in published}
    for line in slim["lines"]:
        for key in ("name", "list_price", "features"):
            line.pop(key, None)
    doc = amendment([add("PLATFORM-PRO", 10), add("EXTRA-STORAGE-TB", 3, "5")])
    rebuilt = original_from_json(json.dumps(slim), catalog)
    assert rebuilt.uplift_percent == Decimal("7.25")
    assert price_amendment(doc, rebuilt, catalog, AMENDED_AT) == price_amendment(
        doc, original, catalog, AMENDED_AT
    )
