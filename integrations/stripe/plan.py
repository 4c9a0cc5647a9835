"""What the priced quote looks like in Stripe, and whether Stripe's invoice still says the same.

Pure functions, no network: the billing activities send what this module builds and feed back what
Stripe returned. Keeping the translation here lets it be tested line by line without an emulator
and keeps ``integrations/stripe/activities.py`` about calls, look-ups and failures.

Mapping (docs/architecture.md, section 3):

- one subscription-schedule phase per contract year, each ending ``12 * k`` months after the term
  start (counted from the term start, never chained), the last one shorter for e.g. 18-month terms;
- each recurring line becomes a phase item priced inline at that year's unit amount for one billing
  period, on a product whose id is derived from the SKU;
- the first invoice holds the one-time lines (and the stub lines): as ``add_invoice_items`` of the
  first phase when the subscription's first invoice is the deal's first invoice, else as invoice
  items of a separate invoice dated at the start, with the schedule starting at the anchor.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict
from stripe.params import (
    CustomerCreateParams,
    CustomerCreateParamsAddress,
    CustomerCreateParamsTaxIdDatum,
    InvoiceCreateParams,
    InvoiceItemCreateParams,
    SubscriptionScheduleCreateParams,
    SubscriptionScheduleCreateParamsDefaultSettings,
    SubscriptionScheduleCreateParamsPhase,
    SubscriptionScheduleCreateParamsPhaseAddInvoiceItem,
    SubscriptionScheduleCreateParamsPhaseItem,
    SubscriptionScheduleCreateParamsPhaseItemPriceDataRecurring,
)

from qtc.dates import add_months
from qtc.errors import QtcError
from qtc.models import PERIOD_MONTHS, InvoiceLine, PricedQuote, ScheduledInvoice

# Stripe refuses schedules with more phases than this; one phase per contract year makes it the
# longest term we can bill exactly (10 years).
MAX_PHASES = 10

# Metadata keys we write on Stripe objects and read back.
META_DEAL_ID = "deal_id"
META_SKU = "sku"
META_KIND = "qtc_kind"
META_LINE = "qtc_line"
META_FIRST_INVOICE = "qtc_first_invoice"
META_SENT = "qtc_sent"


class UnbillableQuote(QtcError):
    """The priced quote cannot be expressed as a Stripe schedule (too long, inconsistent)."""


def utc_midnight(day: date) -> int:
    """The Unix timestamp of ``day`` at 00:00 UTC: what Stripe calls a date."""
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def product_id_for(sku: str) -> str:
    """Stable Stripe product id for a SKU, so every deal bills the same product per SKU."""
    return "qtc_" + re.sub(r"[^A-Za-z0-9_-]", "_", sku)


def has_stub(priced: PricedQuote) -> bool:
    """True when a stub period runs from the start date to the anchor (the next 1st)."""
    return priced.billing_anchor == "first_of_month" and priced.start_date != priced.term_start


def is_services_order(priced: PricedQuote) -> bool:
    """One-time lines only: one invoice of its own, no subscription."""
    return not any(line.kind == "recurring" for line in priced.lines)


def has_own_first_invoice(priced: PricedQuote) -> bool:
    """Whether the first invoice is an invoice of its own rather than the subscription's first."""
    return has_stub(priced) or is_services_order(priced)


def customer_params(deal_id: str, priced: PricedQuote) -> CustomerCreateParams:
    """The Stripe customer for the signed legal entity."""
    account = priced.account
    address: CustomerCreateParamsAddress = {
        "line1": account.address.line1,
        "city": account.address.city,
        "postal_code": account.address.postal_code,
        "country": account.address.country,
    }
    if account.address.line2:
        address["line2"] = account.address.line2
    if account.address.state:
        address["state"] = account.address.state
    params: CustomerCreateParams = {
        "name": account.legal_name,
        "email": account.billing_email,
        "address": address,
        "metadata": {
            META_DEAL_ID: deal_id,
            "opportunity_id": priced.opportunity_id,
            "quote_id": priced.quote_id,
        },
    }
    if account.tax_id is not None:
        tax_id: CustomerCreateParamsTaxIdDatum = {
            "type": account.tax_id.type,
            "value": account.tax_id.value,
        }
        params["tax_id_data"] = [tax_id]
    return params


def recurring_interval(
    priced: PricedQuote,
) -> SubscriptionScheduleCreateParamsPhaseItemPriceDataRecurring:
    """One billing period: a year, or ``period_months`` months."""
    if priced.billing_frequency == "annual":
        return {"interval": "year", "interval_count": 1}
    return {"interval": "month", "interval_count": PERIOD_MONTHS[priced.billing_frequency]}


def contract_years(priced: PricedQuote) -> list[tuple[date, date]]:
    """(start, end) of each contract year, the last one cut at the term end."""
    period = PERIOD_MONTHS[priced.billing_frequency]
    if priced.term_months <= 0 or priced.term_months % period:
        raise UnbillableQuote(
            f"a {priced.term_months}-month term is not a whole number of "
            f"{priced.billing_frequency} periods"
        )
    years = -(-priced.term_months // 12)
    if years > MAX_PHASES:
        raise UnbillableQuote(
            f"a {priced.term_months}-month term needs {years} yearly price phases; Stripe "
            f"schedules hold at most {MAX_PHASES}"
        )
    result = []
    for k in range(years):
        months_before, months_after = 12 * k, min(12 * (k + 1), priced.term_months)
        if (months_after - months_before) % period:
            raise UnbillableQuote(
                f"contract year {k + 1} is not a whole number of {priced.billing_frequency} periods"
            )
        result.append(
            (
                add_months(priced.term_start, months_before),
                add_months(priced.term_start, months_after),
            )
        )
    return result


def _line_metadata(deal_id: str, sku: str, kind: str, index: int | None = None) -> dict[str, str]:
    metadata = {META_DEAL_ID: deal_id, META_SKU: sku, META_KIND: kind}
    if index is not None:
        metadata[META_LINE] = str(index)
    return metadata


def first_invoice_extra_lines(priced: PricedQuote) -> list[InvoiceLine]:
    """The first invoice's lines that are not a recurring period: one-time and stub lines."""
    return [line for line in priced.invoices[0].lines if line.kind != "recurring"]


def _exclusive(items: Iterable[Any], tax: bool) -> None:
    """With tax on, prices say they exclude tax, so Stripe Tax adds it on top: the quote's prices
    are always net. Without it the parameter is left out, so requests (and their idempotency keys)
    stay exactly what earlier versions sent."""
    if tax:
        for item in items:
            item["price_data"]["tax_behavior"] = "exclusive"


def schedule_phases(
    deal_id: str, priced: PricedQuote, *, tax: bool = False
) -> list[SubscriptionScheduleCreateParamsPhase]:
    """One phase per contract year reproducing that year's unit amounts exactly."""
    recurring = [line for line in priced.lines if line.kind == "recurring"]
    if not recurring:
        raise UnbillableQuote("the quote has no recurring line to subscribe to")
    years = contract_years(priced)
    phases: list[SubscriptionScheduleCreateParamsPhase] = []
    for k, (_, year_end) in enumerate(years):
        items: list[SubscriptionScheduleCreateParamsPhaseItem] = []
        for line in recurring:
            amounts = line.unit_amounts_by_year_minor or []
            if len(amounts) < len(years):
                raise UnbillableQuote(
                    f"line {line.sku} has unit amounts for {len(amounts)} years, "
                    f"the term has {len(years)}"
                )
            items.append(
                {
                    "price_data": {
                        "currency": priced.currency,
                        "product": product_id_for(line.sku),
                        "unit_amount": amounts[k],
                        "recurring": recurring_interval(priced),
                    },
                    "quantity": line.quantity,
                    "metadata": _line_metadata(deal_id, line.sku, "recurring"),
                }
            )
        _exclusive(items, tax)
        phase: SubscriptionScheduleCreateParamsPhase = {
            "items": items,
            "end_date": utc_midnight(year_end),
            "proration_behavior": "none",
            "metadata": {META_DEAL_ID: deal_id, "contract_year": str(k + 1)},
        }
        phases.append(phase)
    if not has_stub(priced):
        extra: list[SubscriptionScheduleCreateParamsPhaseAddInvoiceItem] = [
            {
                "price_data": {
                    "currency": priced.currency,
                    "product": product_id_for(line.sku),
                    "unit_amount": line.unit_amount_minor,
                },
                "quantity": line.quantity,
                "metadata": _line_metadata(deal_id, line.sku, line.kind, index),
            }
            for index, line in enumerate(first_invoice_extra_lines(priced))
        ]
        _exclusive(extra, tax)
        if extra:
            phases[0]["add_invoice_items"] = extra
    return phases


def schedule_params(
    deal_id: str, customer_id: str, priced: PricedQuote, *, tax: bool = False
) -> SubscriptionScheduleCreateParams:
    """The whole subscription schedule; it starts at the term start (the anchor with a stub).

    With ``tax``, Stripe Tax computes the tax of every invoice it issues (``automatic_tax``).
    """
    defaults: SubscriptionScheduleCreateParamsDefaultSettings = {
        "collection_method": "send_invoice",
        "invoice_settings": {"days_until_due": priced.payment_terms_days},
    }
    if tax:
        defaults["automatic_tax"] = {"enabled": True}
    return {
        "customer": customer_id,
        "start_date": utc_midnight(priced.term_start),
        "end_behavior": "cancel",
        "default_settings": defaults,
        "metadata": {
            META_DEAL_ID: deal_id,
            "opportunity_id": priced.opportunity_id,
            "quote_id": priced.quote_id,
        },
        "phases": schedule_phases(deal_id, priced, tax=tax),
    }


def amended_phases(
    original_deal_id: str,
    amendment_deal_id: str,
    original: PricedQuote,
    after: PricedQuote,
    changed_from: date,
    first_start: date,
    *,
    tax: bool = False,
) -> list[dict[str, Any]]:
    """The schedule's phases from ``first_start`` (the current phase's start, or the term start
    when the schedule has not started) on, for ``subscription_schedules.update``: each contract
    year at the original's quantities before ``changed_from`` and at the quantities after the
    amendment from it, the year that holds ``changed_from`` split there. Prices stay each year's.
    """
    years = contract_years(original)
    before = schedule_phases(original_deal_id, original, tax=tax)
    later = schedule_phases(original_deal_id, after, tax=tax)
    phases: list[dict[str, Any]] = []

    def add(start: date, end: date, source: SubscriptionScheduleCreateParamsPhase, k: int) -> None:
        if end <= first_start:
            return
        phase: dict[str, Any] = {
            "items": source["items"],
            "end_date": utc_midnight(end),
            "proration_behavior": "none",
            "metadata": {META_DEAL_ID: original_deal_id, "contract_year": str(k + 1)},
        }
        if source is later[k]:
            phase["metadata"]["amended_by"] = amendment_deal_id
        if not phases:
            phase["start_date"] = utc_midnight(max(start, first_start))
        phases.append(phase)

    for k, (year_start, year_end) in enumerate(years):
        if year_end <= changed_from:
            add(year_start, year_end, before[k], k)
        elif year_start >= changed_from:
            add(year_start, year_end, later[k], k)
        else:
            add(year_start, changed_from, before[k], k)
            add(changed_from, year_end, later[k], k)
    return phases


def phase_quantities(phase: Any) -> dict[str, int]:
    """SKU -> quantity of a schedule phase as Stripe returns it (items tagged with their SKU)."""
    result: dict[str, int] = {}
    for item in phase.items:
        metadata: dict[str, str] = item.metadata.to_dict() if item.metadata else {}
        sku = metadata.get(META_SKU)
        if sku is not None:
            result[sku] = result.get(sku, 0) + int(item.quantity or 0)
    return result


def recurring_quantities(priced: PricedQuote) -> dict[str, int]:
    return {line.sku: line.quantity for line in priced.lines if line.kind == "recurring"}


def stub_invoice_params(
    deal_id: str,
    customer_id: str,
    priced: PricedQuote,
    *,
    tax: bool = False,
    amendment_of: str | None = None,
) -> InvoiceCreateParams:
    """The separate first invoice of a deal with a stub period, of a services order (one-time
    lines only) or of an amendment (of the deal ``amendment_of``), filled by
    ``stub_invoice_items``."""
    first = priced.invoices[0]
    if amendment_of is not None:
        description = (
            f"Amendment {priced.quote_id} to {amendment_of}: "
            f"{first.period_start} to {first.period_end}"
        )
    elif has_stub(priced):
        description = f"Stub period {first.period_start} to {first.period_end}"
    else:
        description = f"Services order {priced.quote_id}"
    params: InvoiceCreateParams = {
        "customer": customer_id,
        "currency": priced.currency,
        "collection_method": "send_invoice",
        "days_until_due": priced.payment_terms_days,
        # We finalize and send it ourselves after reconciling it; Stripe must not act first.
        "auto_advance": False,
        # Only the items we attach explicitly belong on it, never stray pending items.
        "pending_invoice_items_behavior": "exclude",
        "description": description,
        "metadata": {
            META_DEAL_ID: deal_id,
            META_FIRST_INVOICE: "true",
            "quote_id": priced.quote_id,
        },
    }
    if tax:
        params["automatic_tax"] = {"enabled": True}
    return params


def stub_invoice_items(
    deal_id: str, customer_id: str, invoice_id: str, priced: PricedQuote, *, tax: bool = False
) -> list[InvoiceItemCreateParams]:
    """Invoice items of the stub invoice: one-time lines and stub lines, each tagged by position."""
    items: list[InvoiceItemCreateParams] = []
    for index, line in enumerate(first_invoice_extra_lines(priced)):
        item: InvoiceItemCreateParams = {
            "customer": customer_id,
            "invoice": invoice_id,
            "currency": priced.currency,
            "price_data": {
                "currency": priced.currency,
                "product": product_id_for(line.sku),
                "unit_amount": line.unit_amount_minor,
            },
            "quantity": line.quantity,
            "metadata": _line_metadata(deal_id, line.sku, line.kind, index),
        }
        if line.period_start is not None and line.period_end is not None:
            item["period"] = {
                "start": utc_midnight(line.period_start),
                "end": utc_midnight(line.period_end),
            }
        items.append(item)
    _exclusive(items, tax)
    return items


# --- reconciliation -------------------------------------------------------------------------


class BilledLine(BaseModel):
    """One invoice line reduced to what the contract fixed: SKU, quantity and money."""

    model_config = ConfigDict(frozen=True)

    sku: str
    quantity: int
    unit_amount_minor: int | str
    amount_minor: int


class Mismatch(BaseModel):
    """Both sides of an invoice that does not say what was signed, for the operator to compare."""

    invoice_id: str
    currency: dict[str, str]
    total_minor: dict[str, int]
    expected_lines: list[BilledLine]
    actual_lines: list[BilledLine]
    missing_in_stripe: list[BilledLine]
    unexpected_in_stripe: list[BilledLine]

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
        if self.missing_in_stripe:
            parts.append(f"{len(self.missing_in_stripe)} quoted line(s) missing")
        if self.unexpected_in_stripe:
            parts.append(f"{len(self.unexpected_in_stripe)} line(s) not in the quote")
        return f"Stripe invoice {self.invoice_id} differs from the signed quote: " + "; ".join(
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


def minor_units(value: Any) -> int | str:
    """A Stripe ``unit_amount_decimal`` as integer minor units, or its text when fractional."""
    amount = Decimal(str(value))
    return int(amount) if amount == amount.to_integral_value() else str(amount)


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
    """Compare Stripe's invoice with the priced one line for line; order does not matter.

    Prices are net of tax: with Stripe Tax on, ``actual_total_minor`` is the invoice's total
    excluding tax (``total_excluding_tax``), and line amounts exclude it already.

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
    agrees = (
        not missing
        and not unexpected
        and actual_total_minor == expected.total_minor
        and actual_currency == expected_currency
    )
    if agrees:
        return None
    return Mismatch(
        invoice_id=invoice_id,
        currency={"expected": expected_currency, "actual": actual_currency},
        total_minor={"expected": expected.total_minor, "actual": actual_total_minor},
        expected_lines=want,
        actual_lines=have,
        missing_in_stripe=missing,
        unexpected_in_stripe=unexpected,
    )
