"""HubSpot data to and from the domain: where each quote fact lives (``PropertyMap``), the
custom properties this product needs (``product_properties``), and how a deal with its line
items, primary company and signer contact becomes a ``Quote``.

A portal with other property names overrides the defaults through ``QTC_HUBSPOT_PROPERTY_MAP``
(a JSON object of logical name to HubSpot property name), as ``QTC_SALESFORCE_FIELD_MAP`` does
for Salesforce.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

from qtc.models import Quote
from runtime.settings import Settings

# HubSpot record ids are numeric; anything else cannot name a deal and never reaches a URL.
RECORD_ID = re.compile(r"^[0-9]{1,20}$")
_PROPERTY_NAME = re.compile(r"^[a-z][a-z0-9_]{0,99}$")
GROUP_NAME = "qtc"
GROUP_LABEL = "Quote-to-Cash"


def _property_name(value: str) -> str:
    if not _PROPERTY_NAME.match(value):
        raise ValueError(
            f"{value!r} is not a HubSpot property name (lowercase letters, digits and _, "
            "starting with a letter)"
        )
    return value


PropertyName = Annotated[str, AfterValidator(_property_name)]


class PropertyMap(BaseModel):
    """Where each quote fact lives in HubSpot.

    Deal properties are read from (and written to) the deal; ``company_*`` from the deal's primary
    company; ``line_*`` from each associated line item; ``contact_*`` from the signer contact (the
    one associated with the ``signer_label`` association label, else the first associated
    contact). ``start_date`` is optional: without it every deal starts on signature.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    deal_name: PropertyName = "dealname"
    stage: PropertyName = "dealstage"
    pipeline: PropertyName = "pipeline"
    close_date: PropertyName = "closedate"
    currency: PropertyName = "deal_currency_code"
    quote_id: PropertyName = "qtc_quote_id"
    term_months: PropertyName = "qtc_term_months"
    billing_frequency: PropertyName = "qtc_billing_frequency"
    billing_anchor: PropertyName = "qtc_billing_anchor"
    payment_terms_days: PropertyName = "qtc_payment_terms_days"
    uplift_percent: PropertyName = "qtc_uplift_percent"
    valid_until: PropertyName = "qtc_valid_until"
    start_date: PropertyName | None = None
    deal_id: PropertyName = "qtc_deal_id"
    billing_customer_id: PropertyName = "qtc_billing_customer_id"
    billing_subscription_id: PropertyName = "qtc_billing_subscription_id"
    billing_invoice_id: PropertyName = "qtc_billing_invoice_id"
    billing_invoice_url: PropertyName = "qtc_billing_invoice_url"

    company_name: PropertyName = "name"
    company_street: PropertyName = "address"
    company_street2: PropertyName = "address2"
    company_city: PropertyName = "city"
    company_state: PropertyName = "state"
    company_postal_code: PropertyName = "zip"
    company_country: PropertyName = "country"
    company_billing_email: PropertyName = "qtc_billing_email"
    company_tax_id_type: PropertyName = "qtc_tax_id_type"
    company_tax_id: PropertyName = "qtc_tax_id"

    line_sku: PropertyName = "hs_sku"
    line_quantity: PropertyName = "quantity"
    line_discount: PropertyName = "hs_discount_percentage"

    contact_first_name: PropertyName = "firstname"
    contact_last_name: PropertyName = "lastname"
    contact_email: PropertyName = "email"
    signer_label: str = "Signer"

    @classmethod
    def from_settings(cls, settings: Settings) -> PropertyMap:
        """The defaults with ``settings.hubspot_property_map`` over them (unknown keys fail)."""
        return cls.model_validate(settings.hubspot_property_map)

    def deal_properties(self) -> list[str]:
        names = [
            self.deal_name,
            self.stage,
            self.pipeline,
            self.currency,
            self.quote_id,
            self.term_months,
            self.billing_frequency,
            self.billing_anchor,
            self.payment_terms_days,
            self.uplift_percent,
            self.valid_until,
            self.start_date,
            self.deal_id,
        ]
        return list(dict.fromkeys(n for n in names if n))

    def company_properties(self) -> list[str]:
        return list(
            dict.fromkeys(
                [
                    self.company_name,
                    self.company_street,
                    self.company_street2,
                    self.company_city,
                    self.company_state,
                    self.company_postal_code,
                    self.company_country,
                    self.company_billing_email,
                    self.company_tax_id_type,
                    self.company_tax_id,
                ]
            )
        )

    def line_properties(self) -> list[str]:
        return list(dict.fromkeys([self.line_sku, self.line_quantity, self.line_discount]))

    def contact_properties(self) -> list[str]:
        return list(
            dict.fromkeys([self.contact_first_name, self.contact_last_name, self.contact_email])
        )


@dataclass(frozen=True)
class ProductProperty:
    """A custom property this product reads or writes, as HubSpot's create call wants it."""

    object_type: str  # "deals" or "companies"
    name: str
    label: str
    type: str
    field_type: str
    options: tuple[tuple[str, str], ...] = ()

    def create_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "fieldType": self.field_type,
            "groupName": GROUP_NAME,
            "description": "Written and read by Quote-to-Cash.",
        }
        if self.options:
            body["options"] = [
                {"label": label, "value": value, "displayOrder": i, "hidden": False}
                for i, (value, label) in enumerate(self.options)
            ]
        return body

    def how_to_create(self) -> str:
        options = f", options {', '.join(v for v, _ in self.options)}" if self.options else ""
        return (
            f"{self.object_type} property {self.name!r} (label {self.label!r}, type {self.type}, "
            f"field type {self.field_type}{options}, group {GROUP_NAME!r})"
        )


def product_properties(pm: PropertyMap) -> list[ProductProperty]:
    """The qtc_* custom properties (under their configured names), deals first."""
    frequencies = (("monthly", "Monthly"), ("quarterly", "Quarterly"), ("annual", "Annual"))
    anchors = (("start", "Start date"), ("first_of_month", "First of month"))
    deal = [
        ProductProperty("deals", pm.quote_id, "QTC quote id", "string", "text"),
        ProductProperty("deals", pm.term_months, "QTC term (months)", "number", "number"),
        ProductProperty(
            "deals",
            pm.billing_frequency,
            "QTC billing frequency",
            "enumeration",
            "select",
            frequencies,
        ),
        ProductProperty(
            "deals", pm.billing_anchor, "QTC billing anchor", "enumeration", "select", anchors
        ),
        ProductProperty(
            "deals", pm.payment_terms_days, "QTC payment terms (days)", "number", "number"
        ),
        ProductProperty("deals", pm.uplift_percent, "QTC yearly uplift (%)", "number", "number"),
        ProductProperty("deals", pm.valid_until, "QTC quote valid until", "date", "date"),
        ProductProperty("deals", pm.deal_id, "QTC deal id", "string", "text"),
        ProductProperty(
            "deals", pm.billing_customer_id, "QTC billing customer id", "string", "text"
        ),
        ProductProperty(
            "deals", pm.billing_subscription_id, "QTC billing subscription id", "string", "text"
        ),
        ProductProperty("deals", pm.billing_invoice_id, "QTC billing invoice id", "string", "text"),
        ProductProperty(
            "deals", pm.billing_invoice_url, "QTC billing invoice URL", "string", "text"
        ),
    ]
    company = [
        ProductProperty(
            "companies", pm.company_billing_email, "QTC billing e-mail", "string", "text"
        ),
        ProductProperty("companies", pm.company_tax_id_type, "QTC tax id type", "string", "text"),
        ProductProperty("companies", pm.company_tax_id, "QTC tax id", "string", "text"),
    ]
    # Only properties under a qtc_ name are ours to create; a map pointing at a portal's own
    # property (``name``, ``zip``) expects it to exist.
    return [p for p in [*deal, *company] if p.name.startswith("qtc_")]


class FieldProblem(BaseModel):
    field: str
    message: str


class DealDataError(ValueError):
    """The deal's HubSpot data does not make a valid quote; every bad property is named."""

    def __init__(self, deal_id: str, problems: list[FieldProblem]) -> None:
        self.deal_id = deal_id
        self.problems = problems
        listed = "; ".join(f"{p.field}: {p.message}" for p in problems)
        super().__init__(f"HubSpot deal {deal_id} cannot be quoted: {listed}")


@dataclass(frozen=True)
class DealRecords:
    """What HubSpot holds for one deal: its properties and those of its associated records."""

    deal_id: str
    deal: Mapping[str, str | None]
    company: Mapping[str, str | None] | None
    company_id: str | None
    contact: Mapping[str, str | None] | None
    line_items: Sequence[Mapping[str, str | None]]


def _text(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def _whole_number(value: Any) -> Any:
    """HubSpot number properties arrive as strings (``"36"``, ``"36.0"``): whole ones as ints.

    Anything else is passed on unchanged so the quote model rejects it with its own message.
    """
    value = _text(value)
    if isinstance(value, str) and re.fullmatch(r"-?\d+(?:\.0+)?", value):
        return int(Decimal(value))
    return value


def _decimal(value: Any) -> Any:
    value = _text(value)
    if value is None:
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return value


def _date(value: Any) -> Any:
    """A date property is ``YYYY-MM-DD``; a datetime one used instead is cut to its date."""
    value = _text(value)
    if isinstance(value, str) and re.match(r"^\d{4}-\d{2}-\d{2}T", value):
        return value[:10]
    return value


def _option(value: Any) -> Any:
    """``"First of month"`` and ``"first-of-month"`` both mean ``first_of_month``."""
    value = _text(value)
    if isinstance(value, str):
        return re.sub(r"[\s-]+", "_", value.lower())
    return value


def quote_from_deal(records: DealRecords, pm: PropertyMap) -> Quote:
    """Map one HubSpot deal (with its company, signer contact and line items) to a ``Quote``.

    Raises:
        DealDataError: naming every HubSpot property that is missing or invalid, as
            ``deal.<name>``, ``company.<name>``, ``contact.<name>`` or ``line_items[i].<name>``.
    """
    sources: dict[tuple[str | int, ...], str] = {}
    problems: list[FieldProblem] = []
    deal, company, contact = records.deal, records.company or {}, records.contact or {}

    def read(
        path: tuple[str | int, ...],
        where: str,
        values: Mapping[str, Any],
        name: str,
        convert: Any = _text,
    ) -> Any:
        sources[path] = f"{where}.{name}"
        return convert(values.get(name))

    if records.company is None:
        problems.append(
            FieldProblem(field="company", message="the deal has no primary company (legal entity)")
        )
    if records.contact is None:
        problems.append(
            FieldProblem(
                field="contact",
                message=f"the deal has no associated contact (labelled {pm.signer_label!r})",
            )
        )

    address: dict[str, Any] = {
        "line1": read(("account", "address", "line1"), "company", company, pm.company_street),
        "city": read(("account", "address", "city"), "company", company, pm.company_city),
        "postal_code": read(
            ("account", "address", "postal_code"), "company", company, pm.company_postal_code
        ),
        "country": read(
            ("account", "address", "country"),
            "company",
            company,
            pm.company_country,
            lambda v: _text(v).upper() if isinstance(_text(v), str) else _text(v),
        ),
    }
    line2 = read(("account", "address", "line2"), "company", company, pm.company_street2)
    if line2:
        address["line2"] = line2
    state = read(("account", "address", "state"), "company", company, pm.company_state)
    if state:
        address["state"] = state
    account: dict[str, Any] = {
        "legal_name": read(("account", "legal_name"), "company", company, pm.company_name),
        "billing_email": read(
            ("account", "billing_email"), "company", company, pm.company_billing_email
        ),
        "address": address,
    }
    tax_type = read(("account", "tax_id", "type"), "company", company, pm.company_tax_id_type)
    tax_value = read(("account", "tax_id", "value"), "company", company, pm.company_tax_id)
    if tax_type or tax_value:
        account["tax_id"] = {"type": tax_type, "value": tax_value}

    first = _text(contact.get(pm.contact_first_name)) or ""
    last = _text(contact.get(pm.contact_last_name)) or ""
    sources[("signer", "name")] = f"contact.{pm.contact_first_name}"
    signer = {
        "name": f"{first} {last}".strip() or None,
        "email": read(("signer", "email"), "contact", contact, pm.contact_email),
    }

    quote: dict[str, Any] = {
        "quote_id": read(("quote_id",), "deal", deal, pm.quote_id),
        "opportunity_id": records.deal_id,
        "currency": read(
            ("currency",),
            "deal",
            deal,
            pm.currency,
            lambda v: _text(v).lower() if isinstance(_text(v), str) else _text(v),
        ),
        "account": account,
        "signer": signer,
        "term_months": read(("term_months",), "deal", deal, pm.term_months, _whole_number),
        "billing_frequency": read(
            ("billing_frequency",), "deal", deal, pm.billing_frequency, _option
        ),
        "valid_until": read(("valid_until",), "deal", deal, pm.valid_until, _date),
    }
    terms = read(("payment_terms_days",), "deal", deal, pm.payment_terms_days, _whole_number)
    if terms is not None:
        quote["payment_terms_days"] = terms
    anchor = read(("billing_anchor",), "deal", deal, pm.billing_anchor, _option)
    if anchor is not None:
        quote["billing_anchor"] = anchor
    uplift = read(("uplift_percent",), "deal", deal, pm.uplift_percent, _decimal)
    if uplift is not None:
        quote["uplift_percent"] = uplift
    if pm.start_date:
        start = read(("start",), "deal", deal, pm.start_date, _date)
        if start:
            quote["start"] = start

    lines: list[dict[str, Any]] = []
    for i, item in enumerate(records.line_items):
        prefix = f"line_items[{i}]"
        sources[("lines", i, "sku")] = f"{prefix}.{pm.line_sku}"
        sources[("lines", i, "quantity")] = f"{prefix}.{pm.line_quantity}"
        sources[("lines", i, "discount_percent")] = f"{prefix}.{pm.line_discount}"
        line: dict[str, Any] = {
            "sku": _text(item.get(pm.line_sku)),
            "quantity": _whole_number(item.get(pm.line_quantity)),
        }
        discount = _decimal(item.get(pm.line_discount))
        if discount is not None:
            line["discount_percent"] = discount
        lines.append(line)
    quote["lines"] = lines
    sources[("lines",)] = "line_items"

    parsed: Quote | None = None
    try:
        parsed = Quote.model_validate(quote)
    except ValidationError as exc:
        problems.extend(_problems_from(exc, sources))
    if problems or parsed is None:
        raise DealDataError(records.deal_id, problems)
    return parsed


def _problems_from(
    exc: ValidationError, sources: Mapping[tuple[str | int, ...], str]
) -> Iterator[FieldProblem]:
    """Name the HubSpot property behind each validation error (the longest known prefix)."""
    for err in exc.errors():
        loc = tuple(err["loc"])
        field = next(
            (sources[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in sources),
            ".".join(str(p) for p in loc),
        )
        value = err.get("input")
        shown = "missing" if value is None else f"got {value!r}"
        yield FieldProblem(field=field, message=f"{err['msg']} ({shown})")
