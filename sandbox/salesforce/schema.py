"""The emulated org's object model: the sObjects, their fields and relationships.

Only what the QTC adapter touches exists, plus the standard fields a Salesforce admin would expect
on them (``CreatedDate``, ``IsDeleted``...). Names are case-insensitive as in Salesforce; responses
always use the canonical API name. Number fields are Salesforce doubles, so ``36`` reads back as
``36.0`` exactly as from a real org.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

FieldType = Literal[
    "id",
    "string",
    "email",
    "textarea",
    "url",
    "picklist",
    "reference",
    "date",
    "datetime",
    "double",
    "percent",
    "currency",
    "boolean",
]
# Record ids are 15 (case-sensitive) or 18 (case-safe) letters and digits.
RECORD_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
STRING_TYPES = frozenset({"id", "string", "email", "textarea", "url", "picklist", "reference"})
NUMBER_TYPES = frozenset({"double", "percent", "currency"})
SF_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f%z"

STAGES = (
    "Prospecting",
    "Qualification",
    "Needs Analysis",
    "Value Proposition",
    "Id. Decision Makers",
    "Perception Analysis",
    "Proposal/Price Quote",
    "Negotiation/Review",
    "Closed Won",
    "Closed Lost",
)


class WriteError(Exception):
    """A create/update body Salesforce would refuse; carries the Salesforce error code."""

    def __init__(self, error_code: str, message: str, fields: list[str] | None = None) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message
        self.fields = fields or []


@dataclass(frozen=True)
class Field:
    name: str
    type: FieldType
    updateable: bool = True
    required: bool = False
    external_id: bool = False
    reference_to: str | None = None
    relationship_name: str | None = None
    picklist: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ChildRelationship:
    name: str
    child_type: str
    field: str


@dataclass(frozen=True)
class SObjectType:
    name: str
    key_prefix: str
    fields: tuple[Field, ...]
    children: tuple[ChildRelationship, ...] = ()

    @cached_property
    def _by_lower(self) -> dict[str, Field]:
        return {f.name.lower(): f for f in self.fields}

    def field(self, name: str) -> Field | None:
        return self._by_lower.get(name.lower())

    def parent(self, relationship_name: str) -> Field | None:
        lowered = relationship_name.lower()
        return next(
            (
                f
                for f in self.fields
                if f.relationship_name and f.relationship_name.lower() == lowered
            ),
            None,
        )

    def child(self, relationship_name: str) -> ChildRelationship | None:
        lowered = relationship_name.lower()
        return next((c for c in self.children if c.name.lower() == lowered), None)


def _standard(*fields: Field) -> tuple[Field, ...]:
    return (
        Field("Id", "id", updateable=False),
        *fields,
        Field("IsDeleted", "boolean", updateable=False),
        Field("CreatedDate", "datetime", updateable=False),
        Field("LastModifiedDate", "datetime", updateable=False),
    )


SCHEMA: dict[str, SObjectType] = {
    t.name: t
    for t in (
        SObjectType(
            "Account",
            "001",
            _standard(
                Field("Name", "string", required=True),
                Field("Industry", "string"),
                Field("BillingStreet", "textarea"),
                Field("BillingCity", "string"),
                Field("BillingState", "string"),
                Field("BillingPostalCode", "string"),
                Field("BillingCountryCode", "string"),
                Field("QTC_Billing_Email__c", "email"),
                Field("QTC_Tax_Id_Type__c", "string"),
                Field("QTC_Tax_Id__c", "string"),
            ),
            children=(
                ChildRelationship("Contacts", "Contact", "AccountId"),
                ChildRelationship("Opportunities", "Opportunity", "AccountId"),
            ),
        ),
        SObjectType(
            "Contact",
            "003",
            _standard(
                Field(
                    "AccountId", "reference", reference_to="Account", relationship_name="Account"
                ),
                Field("FirstName", "string"),
                Field("LastName", "string", required=True),
                Field("Email", "email"),
                Field("Title", "string"),
            ),
        ),
        SObjectType(
            "Product2",
            "01t",
            _standard(
                Field("Name", "string", required=True),
                Field("ProductCode", "string"),
                Field("Family", "string"),
                Field("IsActive", "boolean"),
            ),
        ),
        SObjectType(
            "Opportunity",
            "006",
            _standard(
                Field("Name", "string", required=True),
                Field("StageName", "picklist", required=True, picklist=STAGES),
                Field("CloseDate", "date", required=True),
                Field(
                    "AccountId", "reference", reference_to="Account", relationship_name="Account"
                ),
                Field("CurrencyIsoCode", "picklist", picklist=("USD", "EUR", "GBP")),
                Field("QTC_Quote_Id__c", "string"),
                Field("QTC_Term_Months__c", "double"),
                Field(
                    "QTC_Billing_Frequency__c",
                    "picklist",
                    picklist=("monthly", "quarterly", "annual"),
                ),
                Field("QTC_Billing_Anchor__c", "picklist", picklist=("start", "first_of_month")),
                Field("QTC_Payment_Terms_Days__c", "double"),
                Field("QTC_Uplift_Percent__c", "percent"),
                Field("QTC_Valid_Until__c", "date"),
                Field("QTC_Signer_Name__c", "string"),
                Field("QTC_Signer_Email__c", "email"),
                Field("QTC_Deal_Id__c", "string", external_id=True),
                Field("Stripe_Customer_Id__c", "string"),
                Field("Stripe_Subscription_Id__c", "string"),
                Field("Stripe_Invoice_Id__c", "string"),
                Field("Stripe_Invoice_Url__c", "url"),
            ),
            children=(
                ChildRelationship("OpportunityLineItems", "OpportunityLineItem", "OpportunityId"),
            ),
        ),
        SObjectType(
            "OpportunityLineItem",
            "00k",
            _standard(
                Field(
                    "OpportunityId",
                    "reference",
                    required=True,
                    reference_to="Opportunity",
                    relationship_name="Opportunity",
                ),
                Field(
                    "Product2Id",
                    "reference",
                    required=True,
                    reference_to="Product2",
                    relationship_name="Product2",
                ),
                Field("Quantity", "double", required=True),
                Field("Discount", "percent"),
                Field("UnitPrice", "currency", required=True),
            ),
        ),
    )
}
_BY_LOWER = {name.lower(): t for name, t in SCHEMA.items()}


def sobject(name: str) -> SObjectType | None:
    """The sObject type called ``name`` (case-insensitive), or None."""
    return _BY_LOWER.get(name.lower())


def render(field_: Field, value: Any) -> Any:
    """A stored value as the REST API shows it (doubles as floats)."""
    if value is None:
        return None
    if field_.type in NUMBER_TYPES:
        return float(value)
    return value


def check_value(type_: SObjectType, field_: Field, value: Any) -> Any:
    """Validate one written value the way Salesforce's JSON deserializer and validation do."""
    if value is None:
        if field_.required:
            raise WriteError(
                "REQUIRED_FIELD_MISSING",
                f"Required fields are missing: [{field_.name}]",
                [field_.name],
            )
        return None
    if field_.type in NUMBER_TYPES:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _bad_json(field_, "double", value)
        return value
    if field_.type == "boolean":
        if not isinstance(value, bool):
            raise _bad_json(field_, "boolean", value)
        return value
    if not isinstance(value, str):
        raise _bad_json(field_, "String", value)
    if field_.type == "date":
        try:
            dt.date.fromisoformat(value)
        except ValueError:
            raise _bad_json(field_, "date", value) from None
    if field_.type == "datetime":
        try:
            dt.datetime.fromisoformat(value)
        except ValueError:
            raise _bad_json(field_, "datetime", value) from None
    if field_.type == "email" and value and not EMAIL.fullmatch(value):
        raise WriteError(
            "INVALID_EMAIL_ADDRESS", f"{field_.name}: invalid email address: {value}", [field_.name]
        )
    if field_.type in {"reference", "id"} and not RECORD_ID.fullmatch(value):
        raise WriteError(
            "MALFORMED_ID", f"{field_.name}: id value of incorrect type: {value}", [field_.name]
        )
    if field_.picklist is not None and value not in field_.picklist:
        raise WriteError(
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            f"{type_.name} {field_.name}: bad value for restricted picklist field: {value}",
            [field_.name],
        )
    return value


def _bad_json(field_: Field, expected: str, value: Any) -> WriteError:
    return WriteError(
        "JSON_PARSER_ERROR",
        f"Cannot deserialize instance of {expected} from value {value!r} for field {field_.name}",
        [field_.name],
    )
