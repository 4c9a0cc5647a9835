"""Calendar arithmetic for contract terms and invoice periods."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime


def days_in_month(d: date) -> int:
    return calendar.monthrange(d.year, d.month)[1]


def add_months(d: date, months: int) -> date:
    """``d`` moved by ``months``, keeping its day of month clamped to the target month's last day.

    Callers always count from the term start (``add_months(start, i * period)``) rather than
    chaining period to period: chaining would let a 31st drift to the 28th for the rest of the term.
    """
    index = d.year * 12 + (d.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    return date(year, month, min(d.day, calendar.monthrange(year, month)[1]))


def next_first_of_month(d: date) -> date:
    """The 1st of the month after ``d``."""
    return add_months(d.replace(day=1), 1)


def as_utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime; a naive one is taken to be UTC already."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def utc_date(moment: datetime) -> date:
    """The calendar date of ``moment`` in UTC: 2026-12-15T23:30-08:00 is 2026-12-16."""
    return as_utc(moment).date()
