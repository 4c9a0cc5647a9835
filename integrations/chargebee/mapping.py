"""What the priced quote looks like in Chargebee, and whether Chargebee's invoice still says it.

Pure functions, no network: the activities send what this module builds and feed back what
Chargebee returned, so the translation is tested line by line without an emulator.

Mapping (Product Catalog 2.0; every amount comes from the priced quote, none is recomputed):

- ids derive from the deal and the SKU, so a retry finds what an earlier attempt made even after
  Chargebee forgot the idempotency key (it keeps keys for 30 minutes): customer and subscription
  ``qtc-{deal_id}``; items ``qtc-{SKU}`` in the item family ``qtc``;
- a subscription has exactly one plan: the quote's first recurring line is billed as a plan item,
  every other recurring line as an addon item (``qtc-{SKU}-addon``); one-time lines are charge
  items, and a first-of-month stub is billed by a charge item per SKU (``qtc-{SKU}-stub``);
- one item price per item, currency and billing period (``qtc-{SKU}-USD-1-year``) at the
  catalog's list price; the subscription overrides the unit price of each line with the quote's
  ``u_k`` of contract year 1, and one ramp per later contract year sets that year's ``u_k``;
- ``billing_cycles`` = the term in billing periods; ``net_term_days`` = payment terms;
  ``auto_collection=off``: invoices wait for an offline payment and are e-mailed, never charged;
- the first invoice holds the one-time lines: on the subscription's first invoice (as charges of
  the subscription) when the term starts at once, else (stub) on a one-off invoice dated at the
  start with the stub and one-time lines, the subscription starting at the anchor.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict

from qtc.dates import add_months
from qtc.errors import QtcError
from qtc.models import PERIOD_MONTHS, InvoiceLine, PricedLine, PricedQuote, ScheduledInvoice
from qtc.money import to_minor

ITEM_FAMILY_ID = "qtc"
ITEM_FAMILY_NAME = "Quote-to-Cash"
MAX_ID_LENGTH = 50
META_DEAL_ID = "deal_id"


class UnbillableQuote(QtcError):
    """The priced quote cannot be expressed as a Chargebee subscription."""


def utc_midnight(day: date) -> int:
    """The Unix timestamp of ``day`` at 00:00 UTC: what Chargebee calls a date."""
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def _bounded_id(text: str) -> str:
    """A Chargebee id (letters, digits, ``_.-``; at most 50 characters) that stays unique."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", text)
    if len(safe) <= MAX_ID_LENGTH and safe == text:
        return safe
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return f"{safe[: MAX_ID_LENGTH - 11]}-{digest}"


def customer_id_for(deal_id: str) -> str:
    return _bounded_id(f"qtc-{deal_id}")


def subscription_id_for(deal_id: str) -> str:
    return _bounded_id(f"qtc-{deal_id}")


def is_services_order(priced: PricedQuote) -> bool:
    """One-time lines only: one invoice of its own, no subscription."""
    return not any(line.kind == "recurring" for line in priced.lines)


def has_stub(priced: PricedQuote) -> bool:
    """True when a stub period runs from the start date to the anchor (the next 1st)."""
    return priced.billing_anchor == "first_of_month" and priced.start_date != priced.term_start


def currency_code(priced: PricedQuote) -> str:
    return priced.currency.upper()


def period(priced: PricedQuote) -> tuple[int, str]:
    """Chargebee's (period, period_unit) of one billing period."""
    if priced.billing_frequency == "annual":
        return 1, "year"
    return PERIOD_MONTHS[priced.billing_frequency], "month"


# --- catalog: items and item prices -----------------------------------------------------------


class CatalogEntry(BaseModel):
    """One item and its item price as the deal needs them."""

    model_config = ConfigDict(frozen=True)

    sku: str
    role: str  # plan | addon | charge | stub
    item_id: str
    item_type: str  # plan | addon | charge
    item_name: str
    item_price_id: str
    item_price_name: str
    price_minor: int
    currency_code: str
    period: int | None = None
    period_unit: str | None = None


def _item(sku: str, role: str) -> tuple[str, str]:
    if role == "plan":
        return _bounded_id(f"qtc-{sku}"), "plan"
    if role == "addon":
        return _bounded_id(f"qtc-{sku}-addon"), "addon"
    if role == "stub":
        return _bounded_id(f"qtc-{sku}-stub"), "charge"
    return _bounded_id(f"qtc-{sku}"), "charge"


def catalog_entry(priced: PricedQuote, line: PricedLine, role: str) -> CatalogEntry:
    """The item and item price of ``line`` in ``role``, priced at the catalog's list price."""
    item_id, item_type = _item(line.sku, role)
    code = currency_code(priced)
    suffix = {"plan": "", "addon": " (add-on)", "stub": " (partial month)", "charge": ""}[role]
    if item_type == "charge":
        # One-time: the list price per unit; stub: per unit and month (the bill overrides it with
        # the quote's prorated unit amount).
        return CatalogEntry(
            sku=line.sku,
            role=role,
            item_id=item_id,
            item_type=item_type,
            item_name=f"{line.name}{suffix}",
            item_price_id=_bounded_id(f"{item_id}-{code}"),
            item_price_name=f"{line.name}{suffix} {code}",
            price_minor=to_minor(line.list_price, priced.currency),
            currency_code=code,
        )
    count, unit = period(priced)
    months = PERIOD_MONTHS[priced.billing_frequency]
    return CatalogEntry(
        sku=line.sku,
        role=role,
        item_id=item_id,
        item_type=item_type,
        item_name=f"{line.name}{suffix}",
        item_price_id=_bounded_id(f"{item_id}-{code}-{count}-{unit}"),
        item_price_name=f"{line.name}{suffix} {code} every {count} {unit}",
        price_minor=to_minor(line.list_price * months, priced.currency),
        currency_code=code,
        period=count,
        period_unit=unit,
    )


def recurring_lines(priced: PricedQuote) -> list[PricedLine]:
    return [line for line in priced.lines if line.kind == "recurring"]


def recurring_roles(priced: PricedQuote) -> list[tuple[PricedLine, str]]:
    """Each recurring line with its role: the first is the plan, the others addons."""
    return [(line, "plan" if i == 0 else "addon") for i, line in enumerate(recurring_lines(priced))]


def _line_by_sku(priced: PricedQuote, sku: str) -> PricedLine:
    for line in priced.lines:
        if line.sku == sku:
            return line
    raise UnbillableQuote(f"invoice line {sku} is not a line of the quote")


def catalog_entries(priced: PricedQuote) -> list[CatalogEntry]:
    """Every item and item price the deal bills, each once."""
    entries = [catalog_entry(priced, line, role) for line, role in recurring_roles(priced)]
    for line in priced.invoices[0].lines if priced.invoices else []:
        if line.kind == "one_time":
            entries.append(catalog_entry(priced, _line_by_sku(priced, line.sku), "charge"))
        elif line.kind == "stub":
            entries.append(catalog_entry(priced, _line_by_sku(priced, line.sku), "stub"))
    unique: dict[str, CatalogEntry] = {}
    for entry in entries:
        unique.setdefault(entry.item_price_id, entry)
    return list(unique.values())


def item_params(entry: CatalogEntry) -> dict[str, Any]:
    return {
        "id": entry.item_id,
        "name": entry.item_name,
        "type": entry.item_type,
        "item_family_id": ITEM_FAMILY_ID,
        "metadata": json.dumps({"sku": entry.sku}),
    }


def item_price_params(entry: CatalogEntry) -> dict[str, Any]:
    params: dict[str, Any] = {
        "id": entry.item_price_id,
        "name": entry.item_price_name,
        "item_id": entry.item_id,
        "pricing_model": "per_unit",
        "price": entry.price_minor,
        "currency_code": entry.currency_code,
    }
    if entry.period is not None:
        params["period"] = entry.period
        params["period_unit"] = entry.period_unit
    return params


def sku_by_item_price(priced: PricedQuote) -> dict[str, str]:
    """Item price id -> SKU for every item price this deal can bill."""
    return {entry.item_price_id: entry.sku for entry in catalog_entries(priced)}


# --- customer ---------------------------------------------------------------------------------


def _meta(deal_id: str, priced: PricedQuote, **extra: str) -> str:
    return json.dumps(
        {
            META_DEAL_ID: deal_id,
            "opportunity_id": priced.opportunity_id,
            "quote_id": priced.quote_id,
            **extra,
        },
        separators=(",", ":"),
    )


def customer_params(deal_id: str, priced: PricedQuote) -> dict[str, Any]:
    """The Chargebee customer for the signed legal entity (``meta_data`` as JSON, as the API
    takes it: the SDK would send a dict as its Python repr)."""
    account = priced.account
    address: dict[str, Any] = {
        "company": account.legal_name,
        "email": account.billing_email,
        "line1": account.address.line1,
        "city": account.address.city,
        "zip": account.address.postal_code,
        "country": account.address.country,
    }
    if account.address.line2:
        address["line2"] = account.address.line2
    if account.address.state:
        address["state"] = account.address.state
    extra: dict[str, str] = {}
    params: dict[str, Any] = {
        "id": customer_id_for(deal_id),
        "company": account.legal_name,
        "email": account.billing_email,
        "auto_collection": "off",
        "net_term_days": priced.payment_terms_days,
        "preferred_currency_code": currency_code(priced),
        "billing_address": address,
    }
    if account.tax_id is not None:
        extra = {"tax_id_type": account.tax_id.type, "tax_id": account.tax_id.value}
        if account.tax_id.type == "eu_vat":
            params["vat_number"] = account.tax_id.value
    params["meta_data"] = _meta(deal_id, priced, **extra)
    return params


# --- subscription -----------------------------------------------------------------------------


def contract_year_starts(priced: PricedQuote) -> list[date]:
    """The first day of each contract year of the term (year 1 is the term start)."""
    months = PERIOD_MONTHS[priced.billing_frequency]
    if priced.term_months <= 0 or priced.term_months % months:
        raise UnbillableQuote(
            f"a {priced.term_months}-month term is not a whole number of "
            f"{priced.billing_frequency} periods"
        )
    years = -(-priced.term_months // 12)
    for k in range(years):
        if (min(12 * (k + 1), priced.term_months) - 12 * k) % months:
            raise UnbillableQuote(
                f"contract year {k + 1} is not a whole number of {priced.billing_frequency} periods"
            )
    return [add_months(priced.term_start, 12 * k) for k in range(years)]


def _year_amounts(line: PricedLine, years: int) -> list[int]:
    amounts = line.unit_amounts_by_year_minor or []
    if len(amounts) < years:
        raise UnbillableQuote(
            f"line {line.sku} has unit amounts for {len(amounts)} years, the term has {years}"
        )
    return amounts


def first_invoice_extra_lines(priced: PricedQuote) -> list[InvoiceLine]:
    """The first invoice's lines that are not a recurring period: one-time and stub lines."""
    return [line for line in priced.invoices[0].lines if line.kind != "recurring"]


def subscription_params(deal_id: str, priced: PricedQuote) -> dict[str, Any]:
    """The subscription at contract year 1's prices; later years come as ramps."""
    roles = recurring_roles(priced)
    if not roles:
        raise UnbillableQuote("the quote has no recurring line to subscribe to")
    years = len(contract_year_starts(priced))
    items: list[dict[str, Any]] = []
    for line, role in roles:
        entry = catalog_entry(priced, line, role)
        items.append(
            {
                "item_price_id": entry.item_price_id,
                "quantity": line.quantity,
                "unit_price": _year_amounts(line, years)[0],
            }
        )
    if not has_stub(priced):
        for extra in first_invoice_extra_lines(priced):
            entry = catalog_entry(priced, _line_by_sku(priced, extra.sku), "charge")
            items.append(
                {
                    "item_price_id": entry.item_price_id,
                    "quantity": extra.quantity,
                    "unit_price": extra.unit_amount_minor,
                    "charge_once": True,
                    "charge_on_option": "immediately",
                }
            )
    months = PERIOD_MONTHS[priced.billing_frequency]
    return {
        "id": subscription_id_for(deal_id),
        "subscription_items": items,
        "start_date": utc_midnight(priced.term_start),
        "billing_cycles": priced.term_months // months,
        "net_term_days": priced.payment_terms_days,
        "auto_collection": "off",
        # Held until send_first_invoice has compared it with the quote, then closed and sent.
        "first_invoice_pending": True,
        "po_number": priced.quote_id,
        "meta_data": _meta(deal_id, priced),
    }


class RampPlan(BaseModel):
    model_config = ConfigDict(frozen=True)

    contract_year: int
    effective_from: int
    params: dict[str, Any]


def ramps(priced: PricedQuote) -> list[RampPlan]:
    """One ramp per contract year after the first, setting that year's unit prices."""
    starts = contract_year_starts(priced)
    plans = []
    for k, start in enumerate(starts[1:], start=1):
        updates = [
            {
                "item_price_id": catalog_entry(priced, line, role).item_price_id,
                "unit_price": _year_amounts(line, len(starts))[k],
            }
            for line, role in recurring_roles(priced)
        ]
        effective = utc_midnight(start)
        plans.append(
            RampPlan(
                contract_year=k + 1,
                effective_from=effective,
                params={
                    "effective_from": effective,
                    "description": f"Contract year {k + 1}",
                    "items_to_update": updates,
                },
            )
        )
    return plans


def first_invoice_params(customer_id: str, priced: PricedQuote) -> dict[str, Any]:
    """The one-off first invoice of a stub deal: stub lines and one-time lines, held pending."""
    start = utc_midnight(priced.start_date)
    item_prices = []
    for line in first_invoice_extra_lines(priced):
        role = "stub" if line.kind == "stub" else "charge"
        entry = catalog_entry(priced, _line_by_sku(priced, line.sku), role)
        row: dict[str, Any] = {
            "item_price_id": entry.item_price_id,
            "quantity": line.quantity,
            "unit_price": line.unit_amount_minor,
            "date_from": utc_midnight(line.period_start) if line.period_start else start,
            "date_to": utc_midnight(line.period_end) if line.period_end else start,
        }
        item_prices.append(row)
    return {
        "customer_id": customer_id,
        "currency_code": currency_code(priced),
        "item_prices": item_prices,
        "auto_collection": "off",
        "net_term_days": priced.payment_terms_days,
        "invoice_date": start,
        "po_number": priced.quote_id,
        "create_pending_invoice": True,
    }


# --- reconciliation ---------------------------------------------------------------------------


class BilledLine(BaseModel):
    """One invoice line reduced to what the contract fixed: SKU, quantity and money."""

    model_config = ConfigDict(frozen=True)

    sku: str
    quantity: int
    unit_amount_minor: int | str
    amount_minor: int


class Mismatch(BaseModel):
    """Both sides of an invoice that does not say what was signed, for the operator to compare."""

    vendor: str = "Chargebee"
    invoice_id: str
    currency: dict[str, str]
    total_minor: dict[str, int]
    expected_lines: list[BilledLine]
    actual_lines: list[BilledLine]
    missing_in_billing: list[BilledLine]
    unexpected_in_billing: list[BilledLine]

    def summary(self) -> str:
        parts = []
        if self.currency["expected"] != self.currency["actual"]:
            parts.append(
                f"currency {self.currency['actual']} instead of {self.currency['expected']}"
            )
        if self.total_minor["expected"] != self.total_minor["actual"]:
            parts.append(
                f"total {self.total_minor['actual']} instead of {self.total_minor['expected']}"
            )
        if self.missing_in_billing:
            parts.append(f"{len(self.missing_in_billing)} quoted line(s) missing")
        if self.unexpected_in_billing:
            parts.append(f"{len(self.unexpected_in_billing)} line(s) not in the quote")
        return f"Chargebee invoice {self.invoice_id} differs from the signed quote: " + "; ".join(
            parts
        )


def expected_lines(invoice: ScheduledInvoice) -> list[BilledLine]:
    return [
        BilledLine(
            sku=line.sku,
            quantity=line.quantity,
            unit_amount_minor=line.unit_amount_minor,
            amount_minor=line.amount_minor,
        )
        for line in invoice.lines
    ]


def billed_line(line: Any, skus: dict[str, str]) -> BilledLine:
    """A Chargebee invoice line item as a billed line; its SKU from the item price it bills."""
    entity = line.entity_id or line.entity_type or "(no item price)"
    unit: int | str = line.unit_amount
    if unit is None and line.unit_amount_in_decimal is not None:
        value = Decimal(str(line.unit_amount_in_decimal))
        unit = int(value) if value == value.to_integral_value() else str(value)
    quantity = line.quantity
    if quantity is None and line.quantity_in_decimal is not None:
        quantity = int(Decimal(str(line.quantity_in_decimal)))
    return BilledLine(
        sku=skus.get(entity, entity),
        quantity=quantity or 0,
        unit_amount_minor=unit if unit is not None else "(unknown)",
        amount_minor=line.amount or 0,
    )


def _key(line: BilledLine) -> tuple[str, int, str, int]:
    return (line.sku, line.quantity, str(line.unit_amount_minor), line.amount_minor)


def reconcile(
    invoice_id: str,
    expected: ScheduledInvoice,
    expected_currency: str,
    actual: Iterable[BilledLine],
    actual_total_minor: int,
    actual_currency: str,
) -> Mismatch | None:
    """Compare Chargebee's invoice with the priced one line for line; order does not matter.

    Returns:
        ``None`` when currency, total and every line (as a multiset) agree, else both sides.
    """
    want = sorted(expected_lines(expected), key=_key)
    have = sorted(actual, key=_key)
    missing = list(want)
    unexpected = []
    for line in have:
        if line in missing:
            missing.remove(line)
        else:
            unexpected.append(line)
    expected_code, actual_code = expected_currency.lower(), actual_currency.lower()
    if (
        not missing
        and not unexpected
        and actual_total_minor == expected.total_minor
        and actual_code == expected_code
    ):
        return None
    return Mismatch(
        invoice_id=invoice_id,
        currency={"expected": expected_code, "actual": actual_code},
        total_minor={"expected": expected.total_minor, "actual": actual_total_minor},
        expected_lines=want,
        actual_lines=have,
        missing_in_billing=missing,
        unexpected_in_billing=unexpected,
    )
