"""The priced quote as a DocuSign envelope: what was
priced is what is signed: every commercial fact of the priced quote is written into locked text
tabs of the template's ``Signer`` role, and the envelope carries ``opportunity_id`` and ``deal_id``
as text custom fields. The template must define text tabs with these labels (tabs the template
lacks are ignored by DocuSign, so a lean template still works):

- ``legal_name``, ``billing_email``, ``address``, ``tax_id``, ``signer_name``, ``signer_email``
- ``quote_id``, ``opportunity_id``, ``currency``, ``term_months``, ``billing_frequency``,
  ``payment_terms``, ``start``, ``uplift_percent``, ``valid_until``
- per line ``i`` (1-based): ``line_{i}_sku``, ``line_{i}_name``, ``line_{i}_kind``,
  ``line_{i}_quantity``, ``line_{i}_discount``, then ``line_{i}_unit_amount_year_{k}`` (price per
  unit per billing period in contract year ``k``) for recurring lines or
  ``line_{i}_one_time_amount`` for one-time lines
- ``first_invoice_total``, ``mrr``, ``arr``, ``tcv`` and, per invoice ``n`` (1-based),
  ``payment_schedule_{n}`` as ``"2026-12-15: 69,800.00 USD"``

Money is formatted from integer minor units with the currency (``qtc.money.format_minor``).
"""

from __future__ import annotations

from decimal import Decimal

from docusign_esign import (
    CustomFields,
    EnvelopeDefinition,
    Tabs,
    TemplateRole,
    Text,
    TextCustomField,
)

from qtc.models import PricedQuote
from qtc.money import format_minor

SIGNER_ROLE = "Signer"


def _percent(value: Decimal) -> str:
    return f"{value.normalize():f}%"


def contract_tabs(priced: PricedQuote) -> dict[str, str]:
    """Tab label to value for everything the customer signs, in document order."""
    cur = priced.currency
    acc = priced.account
    addr = acc.address
    address = ", ".join(
        p
        for p in [addr.line1, addr.line2, addr.city, addr.state, addr.postal_code, addr.country]
        if p
    )
    start = priced.requested_start
    tabs: dict[str, str] = {
        "legal_name": acc.legal_name,
        "billing_email": acc.billing_email,
        "address": address,
        "tax_id": f"{acc.tax_id.type}: {acc.tax_id.value}" if acc.tax_id else "",
        "signer_name": priced.signer.name,
        "signer_email": priced.signer.email,
        "quote_id": priced.quote_id,
        "opportunity_id": priced.opportunity_id,
        "currency": cur.upper(),
        "term_months": str(priced.term_months),
        "billing_frequency": priced.billing_frequency,
        "payment_terms": f"Net {priced.payment_terms_days} days",
        "start": "on signature" if start == "on_signature" else start.isoformat(),
        "uplift_percent": _percent(priced.uplift_percent),
        "valid_until": priced.valid_until.isoformat(),
    }
    for i, line in enumerate(priced.lines, start=1):
        tabs[f"line_{i}_sku"] = line.sku
        tabs[f"line_{i}_name"] = line.name
        tabs[f"line_{i}_kind"] = line.kind
        tabs[f"line_{i}_quantity"] = str(line.quantity)
        tabs[f"line_{i}_discount"] = _percent(line.discount_percent)
        for k, unit in enumerate(line.unit_amounts_by_year_minor or [], start=1):
            tabs[f"line_{i}_unit_amount_year_{k}"] = format_minor(unit, cur)
        if line.unit_amount_minor is not None:
            tabs[f"line_{i}_one_time_amount"] = format_minor(line.unit_amount_minor, cur)
    tabs["first_invoice_total"] = format_minor(priced.first_invoice_total_minor, cur)
    tabs["mrr"] = format_minor(priced.mrr_minor, cur)
    tabs["arr"] = format_minor(priced.arr_minor, cur)
    tabs["tcv"] = format_minor(priced.tcv_minor, cur)
    for n, invoice in enumerate(priced.invoices, start=1):
        tabs[f"payment_schedule_{n}"] = (
            f"{invoice.date.isoformat()}: {format_minor(invoice.total_minor, cur)}"
        )
    return tabs


def envelope_definition(deal_id: str, priced: PricedQuote, template_id: str) -> EnvelopeDefinition:
    """The envelope ``send_contract`` creates: template, signer role, locked tabs, custom fields."""
    text_tabs = [
        Text(tab_label=label, value=value, locked="true")
        for label, value in contract_tabs(priced).items()
    ]
    signer = TemplateRole(
        role_name=SIGNER_ROLE,
        name=priced.signer.name,
        email=priced.signer.email,
        tabs=Tabs(text_tabs=text_tabs),
    )
    custom = CustomFields(
        text_custom_fields=[
            TextCustomField(name="opportunity_id", value=priced.opportunity_id, show="false"),
            TextCustomField(name="deal_id", value=deal_id, show="false"),
        ]
    )
    return EnvelopeDefinition(
        template_id=template_id,
        template_roles=[signer],
        custom_fields=custom,
        email_subject=f"Order form {priced.quote_id} for {priced.account.legal_name}"[:100],
        status="sent",
    )
