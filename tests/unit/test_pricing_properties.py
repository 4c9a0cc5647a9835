"""Properties of pricing that must hold for every valid quote, not just the examples."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qtc.cpq import price_quote, priced_to_json
from qtc.dates import add_months
from qtc.models import PERIOD_MONTHS, Catalog, PricedQuote
from qtc.pricing import contract_years, reprice_for_signature
from tests.unit.builders import quote_dict

PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

zones = st.integers(min_value=-12 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
signatures = st.builds(
    lambda naive, zone: naive.replace(tzinfo=zone),
    st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 1)),
    zones,
)
percents = st.decimals(min_value=0, max_value=10, places=2)


@st.composite
def quotes(draw: st.DrawFn) -> dict[str, Any]:
    """Valid quotes over the flexible sample catalog (usd/eur, 12-36 months, every anchor)."""
    frequency = draw(st.sampled_from(["monthly", "quarterly", "annual"]))
    terms = [t for t in (12, 18, 24, 36) if t % PERIOD_MONTHS[frequency] == 0]
    lines: list[dict[str, Any]] = [
        {
            "sku": draw(st.sampled_from(["PLATFORM-PRO", "PLATFORM-STARTER"])),
            "quantity": draw(st.integers(min_value=5, max_value=50)),
            "discount_percent": str(draw(st.decimals(min_value=0, max_value=15, places=2))),
        }
    ]
    for sku, low, high, max_discount in (
        ("ANALYTICS-ADDON", 5, 500, 30),
        ("EXTRA-STORAGE-TB", 1, 500, 25),
        ("SUPPORT-PREMIUM", 1, 1, 20),
        ("IMPL-SERVICES", 1, 10, 25),
    ):
        if draw(st.booleans()):
            lines.append(
                {
                    "sku": sku,
                    "quantity": draw(st.integers(min_value=low, max_value=high)),
                    "discount_percent": str(
                        draw(st.decimals(min_value=0, max_value=max_discount, places=3))
                    ),
                }
            )
    start: str = draw(
        st.one_of(
            st.just("on_signature"),
            st.dates(min_value=date(2023, 6, 1), max_value=date(2031, 6, 1)).map(date.isoformat),
        )
    )
    return quote_dict(
        currency=draw(st.sampled_from(["usd", "eur"])),
        term_months=draw(st.sampled_from(terms)),
        billing_frequency=frequency,
        billing_anchor=draw(st.sampled_from(["start", "first_of_month"])),
        start=start,
        uplift_percent=str(draw(percents)),
        valid_until="2035-12-31",
        lines=lines,
    )


@PROPERTY_SETTINGS
@given(raw=quotes(), signed_at=signatures)
def test_tcv_is_the_sum_of_the_schedule_and_of_the_per_year_unit_prices(
    flexible_catalog: Catalog, raw: dict[str, Any], signed_at: datetime
) -> None:
    priced = price_quote(raw, flexible_catalog, signed_at)
    assert priced.tcv_minor == sum(i.amount_minor for inv in priced.invoices for i in inv.lines)
    for invoice in priced.invoices:
        assert invoice.total_minor == sum(item.amount_minor for item in invoice.lines)
    period = PERIOD_MONTHS[priced.billing_frequency]
    expected = sum(i.amount_minor for i in priced.invoices[0].lines if i.kind != "recurring")
    for line in priced.lines:
        if line.kind == "recurring":
            by_year = line.unit_amounts_by_year_minor or []
            for start_month in range(0, priced.term_months, period):
                expected += by_year[start_month // 12] * line.quantity
    assert priced.tcv_minor == expected
    assert priced.first_invoice_total_minor == priced.invoices[0].total_minor


@PROPERTY_SETTINGS
@given(raw=quotes(), signed_at=signatures)
def test_invoices_are_dated_inside_the_contract_and_periods_tile_it(
    flexible_catalog: Catalog, raw: dict[str, Any], signed_at: datetime
) -> None:
    priced = price_quote(raw, flexible_catalog, signed_at)
    assert priced.start_date >= signed_at.astimezone(UTC).date()
    assert priced.term_end == add_months(priced.term_start, priced.term_months)
    assert priced.invoices[0].date == priced.start_date
    for invoice in priced.invoices:
        assert priced.start_date <= invoice.date < priced.term_end
        assert invoice.date == invoice.period_start < invoice.period_end
        for item in invoice.lines:
            if item.kind != "one_time":
                assert (item.period_start, item.period_end) == (
                    invoice.period_start,
                    invoice.period_end,
                )
    assert priced.invoices[0].period_start == priced.start_date
    for earlier, later in zip(priced.invoices, priced.invoices[1:], strict=False):
        assert earlier.period_end == later.period_start
    assert priced.invoices[-1].period_end == priced.term_end
    periods = priced.term_months // PERIOD_MONTHS[priced.billing_frequency]
    has_stub = priced.term_start != priced.start_date
    assert len(priced.invoices) == periods + (1 if has_stub else 0)
    assert sum(i.kind == "one_time" for inv in priced.invoices[1:] for i in inv.lines) == 0


@PROPERTY_SETTINGS
@given(raw=quotes(), signed_at=signatures)
def test_unit_prices_never_fall_from_one_contract_year_to_the_next(
    flexible_catalog: Catalog, raw: dict[str, Any], signed_at: datetime
) -> None:
    priced = price_quote(raw, flexible_catalog, signed_at)
    for line in priced.lines:
        if line.kind == "recurring":
            by_year = line.unit_amounts_by_year_minor or []
            assert len(by_year) == contract_years(priced.term_months)
            assert by_year == sorted(by_year)
            if priced.uplift_percent == 0:
                assert len(set(by_year)) == 1
        else:
            assert line.unit_amounts_by_year_minor is None
            assert line.unit_amount_minor is not None


@PROPERTY_SETTINGS
@given(raw=quotes(), signed_at=signatures)
def test_the_priced_json_round_trips_without_floats(
    flexible_catalog: Catalog, raw: dict[str, Any], signed_at: datetime
) -> None:
    priced = price_quote(raw, flexible_catalog, signed_at)
    document = priced_to_json(priced)
    assert PricedQuote.model_validate(document) == priced
    assert (
        PricedQuote.model_validate_json(PricedQuote.model_validate(document).model_dump_json())
        == priced
    )
    assert not _contains_float_or_none(document)
    assert isinstance(document["uplift_percent"], str)
    assert Decimal(document["uplift_percent"]) == priced.uplift_percent


@PROPERTY_SETTINGS
@given(raw=quotes(), quoted_at=signatures, signed_at=signatures)
def test_repricing_for_a_signature_equals_pricing_at_that_signature(
    flexible_catalog: Catalog, raw: dict[str, Any], quoted_at: datetime, signed_at: datetime
) -> None:
    quoted = price_quote(raw, flexible_catalog, quoted_at)
    assert reprice_for_signature(quoted, signed_at) == price_quote(raw, flexible_catalog, signed_at)


def _contains_float_or_none(value: object) -> bool:
    if isinstance(value, dict):
        return any(_contains_float_or_none(v) for v in value.values())
    if isinstance(value, list):
        return any(_contains_float_or_none(v) for v in value)
    return value is None or isinstance(value, float)
