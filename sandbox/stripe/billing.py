"""Billing-period arithmetic the way Stripe does it.

Periods are always counted from the billing cycle anchor, never chained from the previous period:
an anchor on the 31st bills on the 28th/29th in February and on the 31st again in March.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

_MONTHS = {"month": 1, "year": 12}
_DAYS = {"day": 1, "week": 7}


def add_months(ts: int, months: int) -> int:
    """``ts`` plus ``months`` calendar months, keeping day and time of day, clamped to month end."""
    moment = datetime.fromtimestamp(ts, UTC)
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return int(moment.replace(year=year, month=month, day=day).timestamp())


def shift(ts: int, interval: str, count: int) -> int:
    """``ts`` moved forward by ``count`` intervals (day, week, month or year)."""
    if interval in _MONTHS:
        return add_months(ts, _MONTHS[interval] * count)
    return int(
        (datetime.fromtimestamp(ts, UTC) + timedelta(days=_DAYS[interval] * count)).timestamp()
    )


def period_containing(anchor: int, interval: str, count: int, at: int) -> tuple[int, int]:
    """The billing period ``[start, end)`` that contains ``at`` for a cycle anchored at ``anchor``.

    Before the anchor, the period is the stub from ``at`` to the anchor.
    """
    if at < anchor:
        return at, anchor
    index = 0
    while shift(anchor, interval, count * (index + 1)) <= at:
        index += 1
    return shift(anchor, interval, count * index), shift(anchor, interval, count * (index + 1))


def line_amount(unit_amount_decimal: str, quantity: int) -> int:
    """Unit amount (minor units, possibly fractional) times quantity, rounded half up."""
    total = Decimal(unit_amount_decimal) * quantity
    return int(total.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def prorate(amount: int, part_seconds: int, whole_seconds: int) -> int:
    """Stripe's time-based proration of ``amount`` (rounded half up)."""
    if whole_seconds <= 0:
        return 0
    share = Decimal(amount) * Decimal(part_seconds) / Decimal(whole_seconds)
    return int(share.quantize(Decimal(1), rounding=ROUND_HALF_UP))


_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£"}


def money(amount: int | Decimal, currency: str) -> str:
    """``129600, "usd"`` -> ``$1,296.00`` (two-decimal currencies; the sandbox's three)."""
    major = Decimal(amount) / 100
    symbol = _SYMBOLS.get(currency, currency.upper() + " ")
    return f"{symbol}{major:,.2f}"
