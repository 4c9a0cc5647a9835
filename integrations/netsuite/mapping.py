"""The billed invoice as NetSuite records, and NetSuite's invoice checked against it.

External ids are derived from the billing system's ids, so the same billing customer and invoice
always address the same NetSuite records: ``qtc-{billing customer id}`` and
``qtc-{billing invoice id}``.

Revenue recognition: a line with a service period ``[start, end)`` is recognised from ``start``
to ``end - 1 day`` (NetSuite's dates are inclusive); a line without one (a one-time charge) on
the invoice date, both dates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from qtc.models import InvoiceLine, PricedQuote, ScheduledInvoice
from qtc.money import minor_exponent

EXTERNAL_ID_PREFIX = "qtc-"
ADDRESS_SUBLIST = "addressBook"
ITEM_SUBLIST = "item"


# The customer fields that come from the signed legal entity, as the pointers an operator corrects
# (``qtc deal correct``): NetSuite refusing one of them is the deal's own data being wrong.
ACCOUNT_FIELDS = {
    "companyName": "/account/legal_name",
    "email": "/account/billing_email",
    "addressBook": "/account/address",
}


def account_pointer(netsuite_path: str | None) -> str | None:
    """The legal entity's field behind a customer field NetSuite refused, if it is one."""
    if not netsuite_path:
        return None
    return ACCOUNT_FIELDS.get(netsuite_path.split(".", 1)[0].split("[", 1)[0])


def customer_external_id(billing_customer_id: str) -> str:
    return EXTERNAL_ID_PREFIX + billing_customer_id


def invoice_external_id(billing_invoice_id: str) -> str:
    return EXTERNAL_ID_PREFIX + billing_invoice_id


def major(amount_minor: int, currency: str) -> Decimal:
    """Minor units as the exact decimal amount NetSuite takes (129600 usd -> 1296.00)."""
    exponent = minor_exponent(currency)
    return Decimal(amount_minor).scaleb(-exponent).quantize(Decimal(1).scaleb(-exponent))


def minor(amount: Decimal | int, currency: str) -> int | None:
    """NetSuite's amount in minor units; None when it has more decimals than the currency."""
    scaled = Decimal(amount).scaleb(minor_exponent(currency))
    return int(scaled) if scaled == scaled.to_integral_value() else None


def rev_rec_dates(line: InvoiceLine, invoice: ScheduledInvoice) -> tuple[date, date]:
    """First and last day (inclusive) of the line's service period."""
    if line.period_start is not None and line.period_end is not None:
        return line.period_start, line.period_end - timedelta(days=1)
    return invoice.date, invoice.date


def customer_body(priced: PricedQuote, subsidiary_id: str, currency_id: str) -> dict[str, Any]:
    account = priced.account
    address: dict[str, Any] = {
        "addr1": account.address.line1,
        "city": account.address.city,
        "zip": account.address.postal_code,
        # NetSuite's country select takes ISO 3166 alpha-2 ids, as the quote holds them.
        "country": {"id": account.address.country},
    }
    if account.address.line2:
        address["addr2"] = account.address.line2
    if account.address.state:
        address["state"] = account.address.state
    return {
        "companyName": account.legal_name,
        "email": account.billing_email,
        "isPerson": False,
        "subsidiary": {"id": subsidiary_id},
        "currency": {"id": currency_id},
        ADDRESS_SUBLIST: {
            "items": [
                {"defaultBilling": True, "defaultShipping": True, "addressBookAddress": address}
            ]
        },
    }


def invoice_body(
    *,
    customer_id: str,
    currency_id: str,
    memo: str,
    invoice: ScheduledInvoice,
    currency: str,
    payment_terms_days: int,
    item_ids: dict[str, str],
) -> dict[str, Any]:
    lines = []
    for line in invoice.lines:
        start, end = rev_rec_dates(line, invoice)
        lines.append(
            {
                "item": {"id": item_ids[line.sku]},
                "quantity": line.quantity,
                "rate": major(line.unit_amount_minor, currency),
                "amount": major(line.amount_minor, currency),
                "revRecStartDate": start.isoformat(),
                "revRecEndDate": end.isoformat(),
            }
        )
    return {
        "entity": {"id": customer_id},
        "tranDate": invoice.date.isoformat(),
        "dueDate": (invoice.date + timedelta(days=payment_terms_days)).isoformat(),
        "currency": {"id": currency_id},
        "memo": memo,
        ITEM_SUBLIST: {"items": lines},
    }


@dataclass(frozen=True)
class Difference:
    """One field where NetSuite's invoice differs from the billed one."""

    field: str
    billed: str
    netsuite: str

    def sentence(self) -> str:
        return f"{self.field}: billed {self.billed}, NetSuite {self.netsuite}"


def reconcile(
    record: dict[str, Any],
    invoice: ScheduledInvoice,
    billed: tuple[int, int],
    currency: str,
    item_ids: dict[str, str],
) -> list[Difference]:
    """Every difference between NetSuite's invoice (read with its lines) and the billed one.

    ``billed`` is (total, tax) in minor units. The lines and the subtotal must equal what was
    billed before tax. Where billing added no tax, NetSuite's total must equal the billed total
    too (a tax code NetSuite applies on its own makes them differ); where billing added tax,
    NetSuite's tax is its own and is not compared.
    """
    billed_total, billed_tax = billed
    differences: list[Difference] = []

    def money(value: Any) -> str:
        return str(value) if value is not None else "(none)"

    checks = [("subtotal", billed_total - billed_tax)]
    if billed_tax == 0:
        checks.append(("total", billed_total))
    for name, amount in checks:
        value = record.get(name)
        if value is None or minor(value, currency) != amount:
            differences.append(Difference(name, str(major(amount, currency)), money(value)))
    sublist = record.get(ITEM_SUBLIST) or {}
    lines = sublist.get("items") if isinstance(sublist, dict) else None
    if not isinstance(lines, list):
        return [*differences, Difference("item", f"{len(invoice.lines)} lines", "no lines read")]
    if len(lines) != len(invoice.lines):
        differences.append(Difference("item", f"{len(invoice.lines)} lines", f"{len(lines)} lines"))
        return differences
    for index, (line, actual) in enumerate(zip(invoice.lines, lines, strict=True)):
        where = f"item.items[{index}] ({line.sku})"
        start, end = rev_rec_dates(line, invoice)
        item = actual.get("item") or {}
        expected: list[tuple[str, Any, Any]] = [
            ("item", item_ids[line.sku], item.get("id")),
            ("quantity", line.quantity, actual.get("quantity")),
            ("amount", line.amount_minor, minor(actual.get("amount") or 0, currency)),
            ("revRecStartDate", start.isoformat(), actual.get("revRecStartDate")),
            ("revRecEndDate", end.isoformat(), actual.get("revRecEndDate")),
        ]
        for name, want, got in expected:
            if name == "quantity" and got is not None and Decimal(got) == want:
                continue
            if want != got:
                shown_want = major(want, currency) if name == "amount" else want
                shown_got = actual.get("amount") if name == "amount" else got
                differences.append(Difference(f"{where}.{name}", str(shown_want), money(shown_got)))
    return differences
