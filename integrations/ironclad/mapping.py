"""The priced quote as the attributes of an Ironclad workflow, and the signature read back.

What was priced is what is signed: every commercial fact of the priced quote becomes an attribute
of the workflow's launch form. The published template must have these attributes (property keys):

- ``counterpartyName`` (the legal entity), ``counterpartyAddress``, ``counterpartyBillingEmail``
  (email), ``counterpartyTaxId``, ``counterpartySignerName``, ``counterpartySignerEmail`` (email)
- ``opportunityId``, ``qtcDealId``, ``quoteId``: how a workflow is traced back to its deal
- ``currency``, ``termMonths`` (number), ``billingFrequency``, ``paymentTermsDays`` (number),
  ``paymentTerms`` (``"Net 30 days"``), ``startDate``, ``upliftPercent`` (number),
  ``validUntil`` (date)
- ``lineItems``: a table (array of objects) of ``sku``, ``description``, ``kind``, ``quantity``,
  ``discountPercent``, ``unitPrice`` (monetary amount: the first contract year's unit price per
  billing period, or the one-time unit price) and ``pricesPerYear`` (``"Year 1: 1,296.00 USD;
  Year 2: ..."``)
- ``firstInvoiceTotal``, ``annualRecurringRevenue``, ``totalContractValue`` (monetary amounts)
  and ``paymentSchedule`` (one ``"2026-12-15: 69,800.00 USD"`` per invoice)

Monetary amounts are ``{"amount": <number in major units>, "currency": "USD"}``, written with the
exact decimal digits of the integer minor units (never through a float).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from qtc.models import PricedQuote
from qtc.money import format_minor, minor_exponent

DEAL_ID_ATTRIBUTE = "qtcDealId"
OPPORTUNITY_ID_ATTRIBUTE = "opportunityId"
SIGNED_DOCUMENTS_ATTRIBUTE = "signed"


def _major(amount_minor: int, currency: str) -> Decimal:
    return Decimal(amount_minor).scaleb(-minor_exponent(currency))


def money(amount_minor: int, currency: str) -> dict[str, Any]:
    """An Ironclad monetary amount from integer minor units."""
    return {"amount": _major(amount_minor, currency), "currency": currency.upper()}


def _percent(value: Decimal) -> Decimal:
    return value.normalize() if value == value.to_integral_value() else value


def launch_attributes(deal_id: str, priced: PricedQuote) -> dict[str, Any]:
    """The launch form's attributes for the priced quote (see the module docstring)."""
    cur = priced.currency
    acc = priced.account
    addr = acc.address
    address = ", ".join(
        p
        for p in [addr.line1, addr.line2, addr.city, addr.state, addr.postal_code, addr.country]
        if p
    )
    start = priced.requested_start
    attributes: dict[str, Any] = {
        "counterpartyName": acc.legal_name,
        "counterpartyAddress": address,
        "counterpartyBillingEmail": acc.billing_email,
        "counterpartySignerName": priced.signer.name,
        "counterpartySignerEmail": priced.signer.email,
        OPPORTUNITY_ID_ATTRIBUTE: priced.opportunity_id,
        DEAL_ID_ATTRIBUTE: deal_id,
        "quoteId": priced.quote_id,
        "currency": cur.upper(),
        "termMonths": priced.term_months,
        "billingFrequency": priced.billing_frequency,
        "paymentTermsDays": priced.payment_terms_days,
        "paymentTerms": f"Net {priced.payment_terms_days} days",
        "startDate": "on signature" if start == "on_signature" else start.isoformat(),
        "upliftPercent": _percent(priced.uplift_percent),
        "validUntil": priced.valid_until.isoformat(),
        "lineItems": [_line_item(line, cur) for line in priced.lines],
        "firstInvoiceTotal": money(priced.first_invoice_total_minor, cur),
        "annualRecurringRevenue": money(priced.arr_minor, cur),
        "totalContractValue": money(priced.tcv_minor, cur),
        "paymentSchedule": "; ".join(
            f"{inv.date.isoformat()}: {format_minor(inv.total_minor, cur)}"
            for inv in priced.invoices
        ),
    }
    if acc.tax_id is not None:
        attributes["counterpartyTaxId"] = f"{acc.tax_id.type}: {acc.tax_id.value}"
    return attributes


def _line_item(line: Any, cur: str) -> dict[str, Any]:
    yearly = line.unit_amounts_by_year_minor or []
    first = yearly[0] if yearly else line.unit_amount_minor
    item: dict[str, Any] = {
        "sku": line.sku,
        "description": line.name,
        "kind": line.kind,
        "quantity": line.quantity,
        "discountPercent": _percent(line.discount_percent),
        "unitPrice": money(first or 0, cur),
    }
    if yearly:
        item["pricesPerYear"] = "; ".join(
            f"Year {k}: {format_minor(unit, cur)}" for k, unit in enumerate(yearly, start=1)
        )
    return item


def encode_json(body: Any) -> bytes:
    """JSON with every ``Decimal`` written as a number with its exact digits.

    The standard encoder only knows floats, and a float may not hold a price exactly; the decimals
    are written as strings between marks no input can contain (a fresh random token), then the
    marks and quotes are removed.
    """
    mark = f"qtc-decimal-{uuid.uuid4().hex}"

    def default(value: Any) -> Any:
        if isinstance(value, Decimal):
            return f"{mark}{value:f}{mark}"
        raise TypeError(f"{type(value).__name__} is not JSON serialisable")

    text = json.dumps(body, default=default, separators=(",", ":"), ensure_ascii=False)
    return re.sub(f'"{mark}(-?[0-9.]+){mark}"', r"\1", text).encode()


def workflow_filter(deal_id: str) -> str:
    """The list filter formula that finds the workflows launched for ``deal_id``."""
    escaped = deal_id.replace("\\", "\\\\").replace("'", "\\'")
    return f"Equals([{DEAL_ID_ATTRIBUTE}], '{escaped}')"


def deal_id_of(workflow: dict[str, Any]) -> str | None:
    """The deal a workflow was launched for; None for a workflow this product did not launch."""
    attributes = workflow.get("attributes") or {}
    value = attributes.get(DEAL_ID_ATTRIBUTE)
    return str(value) if isinstance(value, str) and value else None


@dataclass(frozen=True)
class Signature:
    """Who signed a completed workflow, and when."""

    completed_at: datetime
    name: str | None
    email: str | None


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def signature_of(
    workflow: dict[str, Any], signatures: dict[str, Any], signer_role: str
) -> Signature | None:
    """The counterparty's signature on a completed workflow, or None if it has none.

    Ironclad's signer list gives each signer's name, e-mail, role and status but no time; the time
    is that of the fully signed document the workflow holds (its ``signed`` document attribute,
    last modified when the last signature was applied).
    """
    if workflow.get("status") != "completed":
        return None
    signers = [
        s
        for s in signatures.get("signers") or []
        if (s.get("signatureStatus") or {}).get("status") == "signed"
    ]
    if not signers:
        return None
    signer = next((s for s in signers if s.get("roleName") == signer_role), signers[0])
    documents = (workflow.get("attributes") or {}).get(SIGNED_DOCUMENTS_ATTRIBUTE) or []
    times = [
        t
        for t in (
            _parse_time((doc.get("lastModified") or {}).get("timestamp"))
            for doc in documents
            if isinstance(doc, dict)
        )
        if t is not None
    ]
    completed_at = max(times) if times else _parse_time(workflow.get("lastUpdated"))
    if completed_at is None:
        return None
    return Signature(completed_at, signer.get("name"), signer.get("email"))
