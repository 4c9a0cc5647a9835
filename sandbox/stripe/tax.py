"""Stripe Tax as the emulator computes it: ``automatic_tax[enabled]=true`` on an invoice, a
subscription or a schedule.

The emulated account behaves like a Stripe account with these tax registrations (Stripe Tax only
collects where the account is registered; elsewhere it reports ``not_collecting``):

- United Kingdom: VAT 20 %.
- European Union, established in Ireland (IE) and registered for the One Stop Shop: each member
  state's standard VAT rate (``EU_VAT_RATES``) for a customer there without a valid VAT id. A
  business with a valid EU VAT id (``eu_vat``, verified) in an EU country other than Ireland is
  reverse charged: no tax, ``taxability_reason`` ``reverse_charge``. A business in Ireland pays
  Irish VAT either way.
- No registration anywhere else (the United States included): tax 0, ``not_collecting``.

A customer with ``tax_exempt`` ``exempt`` pays no tax (``customer_exempt``); ``reverse`` is
reverse charged wherever it is. Tax is computed per invoice line on the line's amount and rounded
half-up to the minor unit, as Stripe does by default; with an ``exclusive`` price the tax is added
to the total, with an ``inclusive`` one it is the part of the amount that is tax. A price whose
``tax_behavior`` is ``unspecified`` takes the account default, which is ``exclusive`` here.

Test values for VAT ids: a well-formed ``eu_vat`` is ``verified``, except one whose digits are all
zeros (``DE000000000``), which is ``unverified``; every other tax id type is ``unavailable``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

HOME_EU_COUNTRY = "IE"

GB_VAT_RATE = Decimal("20")
EU_VAT_RATES: dict[str, Decimal] = {
    "AT": Decimal("20"),
    "BE": Decimal("21"),
    "BG": Decimal("20"),
    "CY": Decimal("19"),
    "CZ": Decimal("21"),
    "DE": Decimal("19"),
    "DK": Decimal("25"),
    "EE": Decimal("22"),
    "ES": Decimal("21"),
    "FI": Decimal("25.5"),
    "FR": Decimal("20"),
    "GR": Decimal("24"),
    "HR": Decimal("25"),
    "HU": Decimal("27"),
    "IE": Decimal("23"),
    "IT": Decimal("22"),
    "LT": Decimal("21"),
    "LU": Decimal("17"),
    "LV": Decimal("21"),
    "MT": Decimal("18"),
    "NL": Decimal("21"),
    "PL": Decimal("23"),
    "PT": Decimal("23"),
    "RO": Decimal("19"),
    "SE": Decimal("25"),
    "SI": Decimal("22"),
    "SK": Decimal("23"),
}
# VAT ids of Greece start with EL, not GR.
_VAT_PREFIX_COUNTRY = {"EL": "GR"}


def verification_status(type_: str, value: str) -> str:
    """What Stripe's check of a customer tax id reports in the emulator (see the module doc)."""
    if type_ != "eu_vat":
        return "unavailable"
    digits = [c for c in value[2:] if c.isdigit()]
    return "unverified" if digits and all(c == "0" for c in digits) else "verified"


def vat_id_country(value: str) -> str:
    prefix = value[:2].upper()
    return _VAT_PREFIX_COUNTRY.get(prefix, prefix)


def rate_for(customer: dict[str, Any], tax_ids: list[dict[str, Any]]) -> tuple[Decimal, str, str]:
    """(rate in percent, taxability_reason, jurisdiction country) for the customer."""
    country = ((customer.get("address") or {}).get("country") or "").upper()
    exempt = customer.get("tax_exempt") or "none"
    if exempt == "exempt":
        return Decimal(0), "customer_exempt", country
    if exempt == "reverse":
        return Decimal(0), "reverse_charge", country
    if country == "GB":
        return GB_VAT_RATE, "standard_rated", country
    if country in EU_VAT_RATES:
        if country != HOME_EU_COUNTRY and any(
            t["type"] == "eu_vat"
            and (t.get("verification") or {}).get("status") == "verified"
            and vat_id_country(t["value"]) == country
            for t in tax_ids
        ):
            return Decimal(0), "reverse_charge", country
        return EU_VAT_RATES[country], "standard_rated", country
    return Decimal(0), "not_collecting", country


def has_location(customer: dict[str, Any]) -> bool:
    """Stripe Tax needs the customer's country to compute anything."""
    return bool((customer.get("address") or {}).get("country"))


def tax_rate_id(country: str, rate: Decimal, reason: str) -> str:
    """Stripe Tax reports the rate it applied as a tax rate object; one stable id per rate."""
    digest = hashlib.sha256(f"{country}:{rate}:{reason}".encode()).hexdigest()[:24]
    return f"txr_{digest}"


def line_tax(amount: int, rate: Decimal, behavior: str) -> tuple[int, int]:
    """(tax, taxable amount) of one line, in minor units, rounded half-up."""
    if rate == 0:
        return 0, amount
    if behavior == "inclusive":
        taxable = (Decimal(amount) * 100 / (100 + rate)).quantize(
            Decimal(1), rounding=ROUND_HALF_UP
        )
        return amount - int(taxable), int(taxable)
    tax = (Decimal(amount) * rate / 100).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return int(tax), amount


def apply(
    inv: dict[str, Any],
    customer: dict[str, Any],
    tax_ids: list[dict[str, Any]],
    behavior_of: Callable[[dict[str, Any]], str],
) -> tuple[int, int]:
    """Fill each line's ``taxes`` and the invoice's ``total_taxes``; return (exclusive tax, added
    on top of the subtotal; inclusive tax, already inside it)."""
    rate, reason, country = rate_for(customer, tax_ids)
    rate_id = tax_rate_id(country, rate, reason)
    added = included = 0
    totals: dict[str, dict[str, Any]] = {}
    for line in inv["lines"]["data"]:
        behavior = behavior_of(line)
        if behavior == "unspecified":
            behavior = "exclusive"
        tax, taxable = line_tax(line["amount"], rate, behavior)
        line["taxes"] = [
            {
                "amount": tax,
                "tax_behavior": behavior,
                "tax_rate_details": {"tax_rate": rate_id},
                "taxability_reason": reason,
                "taxable_amount": taxable,
                "type": "tax_rate_details",
            }
        ]
        if behavior == "exclusive":
            added += tax
        else:
            included += tax
        entry = totals.setdefault(
            behavior,
            {
                "amount": 0,
                "tax_behavior": behavior,
                "tax_rate_details": {"tax_rate": rate_id},
                "taxability_reason": reason,
                "taxable_amount": 0,
                "type": "tax_rate_details",
            },
        )
        entry["amount"] += tax
        entry["taxable_amount"] += taxable
    inv["total_taxes"] = list(totals.values())
    inv["automatic_tax"].update(enabled=True, status="complete", provider="stripe")
    inv["automatic_tax"]["liability"] = {"type": "self", "account": None}
    return added, included
