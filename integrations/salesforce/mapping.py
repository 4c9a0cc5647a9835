"""Salesforce data to and from the domain: where each quote fact lives (``FieldMap``) and how an
opportunity record becomes a ``Quote``.

Which CRM fields hold which quote facts is a ``FieldMap``: the defaults match the fields this
product installs in Salesforce, and an org with other names overrides them through
``QTC_SALESFORCE_FIELD_MAP`` (a JSON object of logical name to field path).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import AfterValidator, AliasChoices, BaseModel, ConfigDict, Field, ValidationError
from simple_salesforce.format import format_soql

from qtc.models import Quote
from runtime.settings import Settings

# Salesforce record ids are 15 or 18 alphanumerics; anything else cannot name an opportunity and
# must never reach a SOQL string.
RECORD_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")
_FIELD_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$")
_PLAIN_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _field_path(value: str) -> str:
    if not _FIELD_PATH.match(value):
        raise ValueError(f"{value!r} is not a Salesforce field path (Name or Relation.Name)")
    return value


def _plain_field(value: str) -> str:
    if not _PLAIN_FIELD.match(value):
        raise ValueError(f"{value!r} must be a field of Opportunity itself (no relationship)")
    return value


FieldPath = Annotated[str, AfterValidator(_field_path)]
OpportunityField = Annotated[str, AfterValidator(_plain_field)]


class FieldMap(BaseModel):
    """Where each quote fact lives in the CRM.

    Opportunity fields are relative to Opportunity; account fields are paths through the
    opportunity's parent account (``Account.Name``); line fields are relative to the line item
    relationship named by ``line_items``. Fields this product writes must be plain Opportunity
    fields. ``start_date`` is optional: without it every deal starts on signature.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    opportunity_id: OpportunityField = "Id"
    name: OpportunityField = "Name"
    stage: OpportunityField = "StageName"
    close_date: OpportunityField = "CloseDate"
    currency: FieldPath = "CurrencyIsoCode"
    quote_id: FieldPath = "QTC_Quote_Id__c"
    term_months: FieldPath = "QTC_Term_Months__c"
    billing_frequency: FieldPath = "QTC_Billing_Frequency__c"
    billing_anchor: FieldPath = "QTC_Billing_Anchor__c"
    payment_terms_days: FieldPath = "QTC_Payment_Terms_Days__c"
    uplift_percent: FieldPath = "QTC_Uplift_Percent__c"
    valid_until: FieldPath = "QTC_Valid_Until__c"
    start_date: FieldPath | None = None
    signer_name: FieldPath = "QTC_Signer_Name__c"
    signer_email: FieldPath = "QTC_Signer_Email__c"
    deal_id: OpportunityField = "QTC_Deal_Id__c"
    # The custom fields keep the names orgs already have installed; the logical names are
    # vendor-neutral; QTC_SALESFORCE_FIELD_MAP may still use the former ``stripe_*`` names.
    billing_customer_id: OpportunityField = Field(
        "Stripe_Customer_Id__c",
        validation_alias=AliasChoices("billing_customer_id", "stripe_customer_id"),
    )
    billing_subscription_id: OpportunityField = Field(
        "Stripe_Subscription_Id__c",
        validation_alias=AliasChoices("billing_subscription_id", "stripe_subscription_id"),
    )
    billing_invoice_id: OpportunityField = Field(
        "Stripe_Invoice_Id__c",
        validation_alias=AliasChoices("billing_invoice_id", "stripe_invoice_id"),
    )
    billing_invoice_url: OpportunityField = Field(
        "Stripe_Invoice_Url__c",
        validation_alias=AliasChoices("billing_invoice_url", "stripe_invoice_url"),
    )

    account_name: FieldPath = "Account.Name"
    billing_street: FieldPath = "Account.BillingStreet"
    billing_city: FieldPath = "Account.BillingCity"
    billing_state: FieldPath = "Account.BillingState"
    billing_postal_code: FieldPath = "Account.BillingPostalCode"
    billing_country_code: FieldPath = "Account.BillingCountryCode"
    billing_email: FieldPath = "Account.QTC_Billing_Email__c"
    tax_id_type: FieldPath = "Account.QTC_Tax_Id_Type__c"
    tax_id: FieldPath = "Account.QTC_Tax_Id__c"

    line_items: OpportunityField = "OpportunityLineItems"
    line_quantity: FieldPath = "Quantity"
    line_discount: FieldPath = "Discount"
    line_product_code: FieldPath = "Product2.ProductCode"

    @classmethod
    def from_settings(cls, settings: Settings) -> FieldMap:
        """The defaults with ``settings.salesforce_field_map`` over them (unknown keys fail)."""
        return cls.model_validate(settings.salesforce_field_map)

    def opportunity_fields(self) -> list[str]:
        """Every Opportunity-level field path the quote is read from, in a stable order."""
        names = [
            self.opportunity_id,
            self.name,
            self.stage,
            self.close_date,
            self.currency,
            self.quote_id,
            self.term_months,
            self.billing_frequency,
            self.billing_anchor,
            self.payment_terms_days,
            self.uplift_percent,
            self.valid_until,
            self.start_date,
            self.signer_name,
            self.signer_email,
            self.deal_id,
            self.account_name,
            self.billing_street,
            self.billing_city,
            self.billing_state,
            self.billing_postal_code,
            self.billing_country_code,
            self.billing_email,
            self.tax_id_type,
            self.tax_id,
        ]
        return list(dict.fromkeys(n for n in names if n))

    def line_fields(self) -> list[str]:
        return list(dict.fromkeys([self.line_quantity, self.line_discount, self.line_product_code]))

    def opportunity_soql(self, opportunity_id: str) -> str:
        """One query for the opportunity, its account and its line items.

        Field names are validated identifiers (``FieldPath``) and the id is quoted by
        ``format_soql``, so nothing from outside reaches the query unescaped.
        """
        lines = f"(SELECT {', '.join(self.line_fields())} FROM {self.line_items})"  # noqa: S608
        select = ", ".join([*self.opportunity_fields(), lines])
        soql = f"SELECT {select} FROM Opportunity WHERE Id = {{}}"  # noqa: S608
        return format_soql(soql, opportunity_id)


class FieldProblem(BaseModel):
    field: str
    message: str


class OpportunityDataError(ValueError):
    """The opportunity's CRM data does not make a valid quote; every bad field is named."""

    def __init__(self, opportunity_id: str | None, problems: list[FieldProblem]) -> None:
        self.opportunity_id = opportunity_id
        self.problems = problems
        listed = "; ".join(f"{p.field}: {p.message}" for p in problems)
        super().__init__(f"opportunity {opportunity_id or '(no id)'} cannot be quoted: {listed}")


def _lookup(record: Mapping[str, Any] | None, path: str) -> Any:
    """Follow ``Relation.Field`` through nested SOQL results (or a flat ``"A.B"`` key)."""
    if record is None:
        return None
    if path in record:
        return record[path]
    head, _, rest = path.partition(".")
    if not rest:
        return None
    child = record.get(head)
    return _lookup(child, rest) if isinstance(child, Mapping) else None


def _whole_number(value: Any) -> Any:
    """Salesforce number fields arrive as floats (``36.0``); a whole one becomes an int.

    Anything else is passed on unchanged so the quote model rejects it with its own message.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+(?:\.0+)?\s*", value):
        return int(Decimal(value))
    return value


def _decimal(value: Any) -> Any:
    """Percent fields as exact decimals: ``str(10.0)`` is ``"10.0"``, never ``10.000000000001``."""
    if value is None or isinstance(value, bool):
        return value
    try:
        return Decimal(str(value).strip())
    except InvalidOperation:
        return value


def _picklist(value: Any) -> Any:
    """``"First of month"`` and ``"first-of-month"`` both mean ``first_of_month``."""
    if isinstance(value, str):
        return re.sub(r"[\s-]+", "_", value.strip().lower())
    return value


def _text(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _line_records(record: Mapping[str, Any], relationship: str) -> list[Mapping[str, Any]] | None:
    """Line items as SOQL returns them (``{"records": [...]}``) or as a plain list.

    Salesforce returns ``null`` for an empty subquery: that is no lines, not a malformed answer.
    """
    raw = record.get(relationship)
    if raw is None:
        return []
    if isinstance(raw, Mapping):
        raw = raw.get("records")
    if isinstance(raw, list) and all(isinstance(r, Mapping) for r in raw):
        return raw
    return None


def quote_from_opportunity(record: Mapping[str, Any], field_map: FieldMap) -> Quote:
    """Map one Opportunity record (SOQL shape, account and line items nested) to a ``Quote``.

    Args:
        record: The opportunity as Salesforce returns it from ``opportunity_soql`` (or an
            equivalent JSON document from a Flow callout).
        field_map: Where each fact lives.

    Raises:
        OpportunityDataError: naming every CRM field that is missing or invalid.
    """
    fm = field_map
    sources: dict[tuple[str | int, ...], str] = {}
    problems: list[FieldProblem] = []

    def read(path: tuple[str | int, ...], field: str, convert: Any = _text) -> Any:
        sources[path] = field
        return convert(_lookup(record, field))

    street = _lookup(record, fm.billing_street)
    street_lines = [s.strip() for s in street.splitlines() if s.strip()] if street else []
    sources[("account", "address", "line1")] = fm.billing_street
    sources[("account", "address", "line2")] = fm.billing_street
    address: dict[str, Any] = {
        "line1": street_lines[0] if street_lines else None,
        "city": read(("account", "address", "city"), fm.billing_city),
        "postal_code": read(("account", "address", "postal_code"), fm.billing_postal_code),
        "country": read(
            ("account", "address", "country"),
            fm.billing_country_code,
            lambda v: v.strip().upper() if isinstance(v, str) else v,
        ),
    }
    if len(street_lines) > 1:
        address["line2"] = ", ".join(street_lines[1:])
    state = read(("account", "address", "state"), fm.billing_state)
    if state:
        address["state"] = state

    account: dict[str, Any] = {
        "legal_name": read(("account", "legal_name"), fm.account_name),
        "billing_email": read(("account", "billing_email"), fm.billing_email),
        "address": address,
    }
    tax_type = read(("account", "tax_id", "type"), fm.tax_id_type)
    tax_value = read(("account", "tax_id", "value"), fm.tax_id)
    if tax_type or tax_value:
        account["tax_id"] = {"type": tax_type, "value": tax_value}

    quote: dict[str, Any] = {
        "quote_id": read(("quote_id",), fm.quote_id),
        "opportunity_id": read(("opportunity_id",), fm.opportunity_id),
        "currency": read(
            ("currency",), fm.currency, lambda v: v.strip().lower() if isinstance(v, str) else v
        ),
        "account": account,
        "signer": {
            "name": read(("signer", "name"), fm.signer_name),
            "email": read(("signer", "email"), fm.signer_email),
        },
        "term_months": read(("term_months",), fm.term_months, _whole_number),
        "billing_frequency": read(("billing_frequency",), fm.billing_frequency, _picklist),
        "payment_terms_days": read(("payment_terms_days",), fm.payment_terms_days, _whole_number),
        "valid_until": read(("valid_until",), fm.valid_until),
    }
    anchor = read(("billing_anchor",), fm.billing_anchor, _picklist)
    if anchor is not None:
        quote["billing_anchor"] = anchor
    uplift = read(("uplift_percent",), fm.uplift_percent, _decimal)
    if uplift is not None:
        quote["uplift_percent"] = uplift
    if fm.start_date:
        start = read(("start",), fm.start_date)
        if start:
            quote["start"] = start

    items = _line_records(record, fm.line_items)
    if items is None:
        problems.append(FieldProblem(field=fm.line_items, message="not a list of line items"))
        items = []
    lines: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        prefix = f"{fm.line_items}[{i}]"
        sources[("lines", i, "sku")] = f"{prefix}.{fm.line_product_code}"
        sources[("lines", i, "quantity")] = f"{prefix}.{fm.line_quantity}"
        sources[("lines", i, "discount_percent")] = f"{prefix}.{fm.line_discount}"
        line = {
            "sku": _text(_lookup(item, fm.line_product_code)),
            "quantity": _whole_number(_lookup(item, fm.line_quantity)),
        }
        discount = _decimal(_lookup(item, fm.line_discount))
        if discount is not None:
            line["discount_percent"] = discount
        lines.append(line)
    quote["lines"] = lines
    sources[("lines",)] = fm.line_items

    try:
        parsed = Quote.model_validate(quote)
    except ValidationError as exc:
        problems.extend(_problems_from(exc, sources))
    if problems:
        opp_id = _lookup(record, fm.opportunity_id)
        raise OpportunityDataError(opp_id if isinstance(opp_id, str) else None, problems)
    return parsed


def _problems_from(
    exc: ValidationError, sources: Mapping[tuple[str | int, ...], str]
) -> Iterator[FieldProblem]:
    """Name the CRM field behind each validation error (the longest known prefix of its path)."""
    for err in exc.errors():
        loc = tuple(err["loc"])
        field = next(
            (sources[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in sources),
            ".".join(str(p) for p in loc),
        )
        value = err.get("input")
        shown = "missing" if value is None else f"got {value!r}"
        yield FieldProblem(field=field, message=f"{err['msg']} ({shown})")
