"""Deals as a salesperson builds them in HubSpot, made through the official SDK: a company with
its legal-entity properties, a signer contact under the ``Signer`` label, line items with SKUs,
and the deal's qtc_* terms. Used by the demo and the tests (the qtc properties must exist first:
``HubSpotCrm.ensure_schema(create=True)``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hubspot import HubSpot

PRIMARY_COMPANY = 5
LINE_ITEM_TO_DEAL = 20


@dataclass(frozen=True)
class SeededDeal:
    deal_id: str
    company_id: str
    contact_ids: list[str]
    line_item_ids: list[str]


def acme_company(suffix: str = "") -> dict[str, str]:
    return {
        "name": f"Acme Robotics{suffix}, Inc.",
        "address": "1 Main St",
        "city": "Austin",
        "state": "TX",
        "zip": "78701",
        "country": "US",
        "qtc_billing_email": "ap@acme.example",
        "qtc_tax_id_type": "us_ein",
        "qtc_tax_id": "12-3456789",
    }


def deal_terms(quote_id: str, valid_until: str = "2099-01-31") -> dict[str, str]:
    return {
        "qtc_quote_id": quote_id,
        "deal_currency_code": "USD",
        "qtc_term_months": "36",
        "qtc_billing_frequency": "annual",
        "qtc_billing_anchor": "start",
        "qtc_payment_terms_days": "30",
        "qtc_uplift_percent": "7",
        "qtc_valid_until": valid_until,
    }


DEFAULT_LINES: tuple[dict[str, str], ...] = (
    {"hs_sku": "PLATFORM-PRO", "quantity": "50", "hs_discount_percentage": "10"},
    {"hs_sku": "SUPPORT-PREMIUM", "quantity": "1"},
)


def seed_deal(
    hs: HubSpot,
    *,
    quote_id: str,
    stage: str = "decisionmakerboughtin",
    company: dict[str, str] | None = None,
    terms: dict[str, str] | None = None,
    lines: tuple[dict[str, str], ...] | list[dict[str, str]] = DEFAULT_LINES,
    signer: tuple[str, str, str] = ("Jane", "Doe", "jane@acme.example"),
    other_contacts: int = 1,
    signer_label: str = "Signer",
) -> SeededDeal:
    """Create the company, contacts, deal and line items, associated as HubSpot would show them.

    ``other_contacts`` unlabelled contacts are associated first, so the signer is found by its
    label rather than by being the first contact.
    """
    crm = hs.crm
    company_id = crm.companies.basic_api.create({"properties": company or acme_company()}).id
    deal: dict[str, Any] = {
        "properties": {
            "dealname": f"{(company or acme_company())['name']} - {quote_id}",
            "dealstage": stage,
            "pipeline": "default",
            **(terms if terms is not None else deal_terms(quote_id)),
        },
        "associations": [
            {
                "to": {"id": company_id},
                "types": [
                    {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": PRIMARY_COMPANY}
                ],
            }
        ],
    }
    deal_id = crm.deals.basic_api.create(deal).id
    contact_ids = []
    for i in range(other_contacts):
        other = crm.contacts.basic_api.create(
            {
                "properties": {
                    "firstname": "Sam",
                    "lastname": f"Buyer{i}",
                    "email": f"buyer{i}@acme.example",
                }
            }
        ).id
        crm.associations.v4.basic_api.create_default("deals", deal_id, "contacts", other)
        contact_ids.append(other)
    first, last, email = signer
    signer_id = crm.contacts.basic_api.create(
        {"properties": {"firstname": first, "lastname": last, "email": email}}
    ).id
    label_type = next(
        d.type_id
        for d in crm.associations.v4.schema.definitions_api.get_all("deals", "contacts").results
        if d.label == signer_label
    )
    crm.associations.v4.basic_api.create(
        "deals",
        deal_id,
        "contacts",
        signer_id,
        [{"associationCategory": "USER_DEFINED", "associationTypeId": label_type}],
    )
    contact_ids.append(signer_id)
    line_ids = []
    for line in lines:
        created = crm.line_items.basic_api.create(
            {
                "properties": {"name": line.get("hs_sku", "line"), **line},
                "associations": [
                    {
                        "to": {"id": deal_id},
                        "types": [
                            {
                                "associationCategory": "HUBSPOT_DEFINED",
                                "associationTypeId": LINE_ITEM_TO_DEAL,
                            }
                        ],
                    }
                ],
            }
        )
        line_ids.append(created.id)
    return SeededDeal(str(deal_id), str(company_id), [str(c) for c in contact_ids], line_ids)
