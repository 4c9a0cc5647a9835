"""The arithmetic that turns priced lines and contract terms into money and dates
(docs/architecture.md, section 3).

This is the single implementation of the invoice schedule. ``qtc.cpq.price_quote`` calls it when a
quote is priced, and the deal workflow calls ``reprice_for_signature`` when the signature arrives:
the dates move to the real signature day, the prices stay those the customer saw, and no catalog is
consulted (it may have changed since the quote went out).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, localcontext

from qtc.dates import add_months, as_utc, days_in_month, next_first_of_month, utc_date
from qtc.models import (
    PERIOD_MONTHS,
    BillingAnchor,
    BillingFrequency,
    InvoiceLine,
    PricedLine,
    PricedQuote,
    ScheduledInvoice,
)
from qtc.money import to_minor

# Uplift compounds: (1 + 7.125/100) ** 9 already has 54 significant digits. Computing with more
# precision than the default 28 keeps the compounded factor exact, so a price never depends on
# where a rounding happened to fall inside the power.
_PRECISION = 80


@dataclass(frozen=True)
class Terms:
    """The contract terms the schedule depends on, as they travel on a priced quote."""

    currency: str
    term_months: int
    billing_frequency: BillingFrequency
    billing_anchor: BillingAnchor
    requested_start: str | date
    uplift_percent: Decimal

    @classmethod
    def of(cls, priced: PricedQuote) -> Terms:
        return cls(
            currency=priced.currency,
            term_months=priced.term_months,
            billing_frequency=priced.billing_frequency,
            billing_anchor=priced.billing_anchor,
            requested_start=priced.requested_start,
            uplift_percent=priced.uplift_percent,
        )


@dataclass(frozen=True)
class Schedule:
    """Everything about a priced quote that depends on the signature date."""

    signed_at: datetime
    start_date: date
    term_start: date
    term_end: date
    lines: list[PricedLine]
    invoices: list[ScheduledInvoice]
    mrr_minor: int
    arr_minor: int
    tcv_minor: int
    first_invoice_total_minor: int


def net_unit_price(line: PricedLine) -> Decimal:
    """``list_price * (1 - discount/100)``, exact: rounding happens only on amounts billed.

    For a recurring line this is ``m``, the net price per unit per month; for a one-time line it
    is the net price per unit before rounding.
    """
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return line.list_price * (1 - line.discount_percent / 100)


def start_date_for(requested_start: str | date, signed_at: datetime) -> date:
    """The signature date (UTC), or a later requested start: a contract never starts before it is
    signed, so a requested date already in the past moves to the signature date."""
    signed_on = utc_date(signed_at)
    if isinstance(requested_start, date):
        return max(requested_start, signed_on)
    return signed_on


def contract_years(term_months: int) -> int:
    """Number of contract years a term touches (18 months -> 2)."""
    return -(-term_months // 12)


def price_schedule(lines: list[PricedLine], terms: Terms, signed_at: datetime) -> Schedule:
    """Unit amounts, the full invoice schedule and the headline figures for a signature time.

    ``lines`` carry everything needed (kind, quantity, list price, discount); any unit amounts
    already on them are recomputed. The term must be a whole number of billing periods (CPQ rejects
    other quotes with ``term_not_multiple_of_period`` before they get here).
    """
    signed_at = as_utc(signed_at)
    start = start_date_for(terms.requested_start, signed_at)
    has_stub = terms.billing_anchor == "first_of_month" and start.day != 1
    term_start = next_first_of_month(start) if has_stub else start
    term_end = add_months(term_start, terms.term_months)
    period_months = PERIOD_MONTHS[terms.billing_frequency]
    priced = [_with_unit_amounts(line, terms, period_months) for line in lines]

    periods = [
        (add_months(term_start, i * period_months), add_months(term_start, (i + 1) * period_months))
        for i in range(terms.term_months // period_months)
    ]
    first_lines: list[InvoiceLine] = []
    for line in priced:
        if line.kind == "one_time":
            first_lines.append(_one_time_item(line))
        elif has_stub:
            first_lines.append(_stub_item(line, terms.currency, start, term_start))
        else:
            first_lines.append(_period_item(line, periods[0], year=0))
    first_period = (start, term_start) if has_stub else periods[0]
    invoices = [_invoice(start, first_period, first_lines)]
    # A services order (one-time lines only) has no subscription: its one invoice is the first.
    recurring = any(line.kind == "recurring" for line in priced)
    for index, period in enumerate(periods if recurring else []):
        if index == 0 and not has_stub:
            continue
        year = index * period_months // 12
        items = [_period_item(line, period, year) for line in priced if line.kind == "recurring"]
        invoices.append(_invoice(period[0], period, items))

    mrr = sum(
        to_minor(net_unit_price(line) * line.quantity, terms.currency)
        for line in priced
        if line.kind == "recurring"
    )
    return Schedule(
        signed_at=signed_at,
        start_date=start,
        term_start=term_start,
        term_end=term_end,
        lines=priced,
        invoices=invoices,
        mrr_minor=mrr,
        arr_minor=12 * mrr,
        tcv_minor=sum(invoice.total_minor for invoice in invoices),
        first_invoice_total_minor=invoices[0].total_minor,
    )


def reprice_for_signature(priced: PricedQuote, signed_at: datetime) -> PricedQuote:
    """``priced`` re-dated to the real signature time, using only the data on the priced quote.

    Status, approvals and adjustments are kept: they were decided when the quote was priced.
    """
    schedule = price_schedule(priced.lines, Terms.of(priced), signed_at)
    return priced.model_copy(
        deep=True,
        update={
            "signed_at": schedule.signed_at,
            "start_date": schedule.start_date,
            "term_start": schedule.term_start,
            "term_end": schedule.term_end,
            "lines": schedule.lines,
            "invoices": schedule.invoices,
            "mrr_minor": schedule.mrr_minor,
            "arr_minor": schedule.arr_minor,
            "tcv_minor": schedule.tcv_minor,
            "first_invoice_total_minor": schedule.first_invoice_total_minor,
        },
    )


def _with_unit_amounts(line: PricedLine, terms: Terms, period_months: int) -> PricedLine:
    if line.kind == "one_time":
        unit = to_minor(net_unit_price(line), terms.currency)
        return line.model_copy(
            update={"unit_amount_minor": unit, "unit_amounts_by_year_minor": None}
        )
    m = net_unit_price(line)
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        growth = 1 + terms.uplift_percent / 100
        by_year = [
            to_minor(m * period_months * growth**year, terms.currency)
            for year in range(contract_years(terms.term_months))
        ]
    return line.model_copy(
        update={"unit_amounts_by_year_minor": by_year, "unit_amount_minor": None}
    )


def _one_time_item(line: PricedLine) -> InvoiceLine:
    unit = line.unit_amount_minor or 0
    return InvoiceLine(
        sku=line.sku,
        kind="one_time",
        quantity=line.quantity,
        unit_amount_minor=unit,
        amount_minor=unit * line.quantity,
    )


def _stub_item(line: PricedLine, currency: str, start: date, term_start: date) -> InvoiceLine:
    """``round(m * stub_days / days_in_start_month) * quantity``: year-1 price, prorated by day."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        fraction = Decimal((term_start - start).days) / days_in_month(start)
        unit = to_minor(net_unit_price(line) * fraction, currency)
    return InvoiceLine(
        sku=line.sku,
        kind="stub",
        quantity=line.quantity,
        unit_amount_minor=unit,
        amount_minor=unit * line.quantity,
        period_start=start,
        period_end=term_start,
    )


def _period_item(line: PricedLine, period: tuple[date, date], year: int) -> InvoiceLine:
    unit = (line.unit_amounts_by_year_minor or [])[year]
    return InvoiceLine(
        sku=line.sku,
        kind="recurring",
        quantity=line.quantity,
        unit_amount_minor=unit,
        amount_minor=unit * line.quantity,
        period_start=period[0],
        period_end=period[1],
    )


def _invoice(issued: date, period: tuple[date, date], lines: list[InvoiceLine]) -> ScheduledInvoice:
    return ScheduledInvoice(
        date=issued,
        period_start=period[0],
        period_end=period[1],
        lines=lines,
        total_minor=sum(line.amount_minor for line in lines),
    )
