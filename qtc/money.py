"""Money arithmetic: ``Decimal`` inside the domain, integer minor units at every boundary.

Rounding is half-up to the currency's minor unit, the way an invoice reader checks it by hand.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

# ISO 4217 currencies without a minor unit; every other currency we sell in has two decimals.
_ZERO_DECIMAL = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf"}
    | {"xof", "xpf"}
)


def minor_exponent(currency: str) -> int:
    """Number of decimals of the currency's minor unit (``usd`` -> 2, ``jpy`` -> 0)."""
    return 0 if currency.lower() in _ZERO_DECIMAL else 2


def round_money(amount: Decimal, currency: str) -> Decimal:
    """``amount`` rounded half-up to the currency's minor unit."""
    return amount.quantize(Decimal(1).scaleb(-minor_exponent(currency)), rounding=ROUND_HALF_UP)


def to_minor(amount: Decimal, currency: str) -> int:
    """``amount`` rounded half-up and expressed in integer minor units (12.345 usd -> 1235)."""
    return int(round_money(amount, currency).scaleb(minor_exponent(currency)))


def format_minor(amount_minor: int, currency: str, *, with_code: bool = True) -> str:
    """Minor units for people: ``format_minor(129600, "usd") == "1,296.00 USD"``."""
    exponent = minor_exponent(currency)
    major = Decimal(amount_minor).scaleb(-exponent)
    text = f"{major:,.{exponent}f}"
    return f"{text} {currency.upper()}" if with_code else text
