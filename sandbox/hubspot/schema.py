"""What a fresh HubSpot portal knows before anyone customises it: object types, their default
properties and groups, the default deal pipeline and the HubSpot-defined association types.

Values are HubSpot's own (object type ids ``0-1`` ... , association type ids such as 5 for a deal's
primary company, the stage ids of the default sales pipeline), so that code written against this
emulator works unchanged against a real portal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ObjectType:
    type_id: str  # "0-3"
    plural: str  # "deals"
    singular: str  # "deal"
    default_properties: tuple[str, ...]
    modified_property: str = "hs_lastmodifieddate"
    required: tuple[str, ...] = ()
    search_text: tuple[str, ...] = ()


OBJECT_TYPES: tuple[ObjectType, ...] = (
    ObjectType(
        "0-1",
        "contacts",
        "contact",
        ("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"),
        modified_property="lastmodifieddate",
        search_text=("firstname", "lastname", "email"),
    ),
    ObjectType(
        "0-2",
        "companies",
        "company",
        ("createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"),
        search_text=("name", "domain"),
    ),
    ObjectType(
        "0-3",
        "deals",
        "deal",
        (
            "amount",
            "closedate",
            "createdate",
            "dealname",
            "dealstage",
            "hs_lastmodifieddate",
            "hs_object_id",
            "pipeline",
        ),
        search_text=("dealname",),
    ),
    ObjectType(
        "0-8",
        "line_items",
        "line_item",
        (
            "amount",
            "createdate",
            "hs_lastmodifieddate",
            "hs_object_id",
            "name",
            "price",
            "quantity",
        ),
        search_text=("name",),
    ),
    ObjectType(
        "0-46",
        "notes",
        "note",
        ("hs_createdate", "hs_lastmodifieddate", "hs_object_id"),
        required=("hs_timestamp",),
    ),
)

_BY_NAME: dict[str, ObjectType] = {}
for _t in OBJECT_TYPES:
    for _name in (_t.type_id, _t.plural, _t.singular):
        _BY_NAME[_name] = _t


def object_type(name: str) -> ObjectType | None:
    """The object type a path segment names: ``deals``, ``deal`` and ``0-3`` all work."""
    return _BY_NAME.get(name.lower())


# (name, label, type, fieldType, groupName, read-only value, options)
PropertyRow = tuple[str, str, str, str, str, bool, list[dict[str, Any]]]

CURRENCIES = ["USD", "EUR", "GBP", "CAD", "AUD", "JPY"]

PIPELINE_ID = "default"
DEAL_STAGES: list[tuple[str, str, str]] = [
    # (stage id, label, probability)
    ("appointmentscheduled", "Appointment Scheduled", "0.2"),
    ("qualifiedtobuy", "Qualified To Buy", "0.4"),
    ("presentationscheduled", "Presentation Scheduled", "0.6"),
    ("decisionmakerboughtin", "Decision Maker Bought-In", "0.8"),
    ("contractsent", "Contract Sent", "0.9"),
    ("closedwon", "Closed Won", "1.0"),
    ("closedlost", "Closed Lost", "0.0"),
]


def _options(values: list[tuple[str, str]]) -> list[dict[str, Any]]:
    return [
        {"label": label, "value": value, "displayOrder": i, "hidden": False}
        for i, (value, label) in enumerate(values)
    ]


def _common(group: str) -> list[PropertyRow]:
    return [
        ("createdate", "Create Date", "datetime", "date", group, True, []),
        ("hs_lastmodifieddate", "Last Modified Date", "datetime", "date", group, True, []),
        ("hs_object_id", "Record ID", "number", "number", group, True, []),
    ]


DEFAULT_PROPERTIES: dict[str, list[PropertyRow]] = {
    "0-1": [
        ("createdate", "Create Date", "datetime", "date", "contactinformation", True, []),
        (
            "lastmodifieddate",
            "Last Modified Date",
            "datetime",
            "date",
            "contactinformation",
            True,
            [],
        ),
        ("hs_object_id", "Record ID", "number", "number", "contactinformation", True, []),
        ("email", "Email", "string", "text", "contactinformation", False, []),
        ("firstname", "First Name", "string", "text", "contactinformation", False, []),
        ("lastname", "Last Name", "string", "text", "contactinformation", False, []),
        ("jobtitle", "Job Title", "string", "text", "contactinformation", False, []),
        ("phone", "Phone Number", "string", "phonenumber", "contactinformation", False, []),
    ],
    "0-2": [
        *_common("companyinformation"),
        ("name", "Company name", "string", "text", "companyinformation", False, []),
        ("domain", "Company Domain Name", "string", "text", "companyinformation", False, []),
        ("address", "Street Address", "string", "text", "companyinformation", False, []),
        ("address2", "Street Address 2", "string", "text", "companyinformation", False, []),
        ("city", "City", "string", "text", "companyinformation", False, []),
        ("state", "State/Region", "string", "text", "companyinformation", False, []),
        ("zip", "Postal Code", "string", "text", "companyinformation", False, []),
        ("country", "Country/Region", "string", "text", "companyinformation", False, []),
    ],
    "0-3": [
        *_common("dealinformation"),
        ("dealname", "Deal Name", "string", "text", "dealinformation", False, []),
        ("amount", "Amount", "number", "number", "dealinformation", False, []),
        ("closedate", "Close Date", "datetime", "date", "dealinformation", False, []),
        (
            "pipeline",
            "Pipeline",
            "enumeration",
            "select",
            "dealinformation",
            False,
            _options([(PIPELINE_ID, "Sales Pipeline")]),
        ),
        (
            "dealstage",
            "Deal Stage",
            "enumeration",
            "radio",
            "dealinformation",
            False,
            _options([(s, label) for s, label, _ in DEAL_STAGES]),
        ),
        (
            "deal_currency_code",
            "Currency",
            "enumeration",
            "select",
            "dealinformation",
            False,
            _options([(c, c) for c in CURRENCIES]),
        ),
        ("description", "Deal Description", "string", "textarea", "dealinformation", False, []),
    ],
    "0-8": [
        *_common("lineiteminformation"),
        ("name", "Name", "string", "text", "lineiteminformation", False, []),
        ("hs_sku", "SKU", "string", "text", "lineiteminformation", False, []),
        ("quantity", "Quantity", "number", "number", "lineiteminformation", False, []),
        ("price", "Unit price", "number", "number", "lineiteminformation", False, []),
        ("amount", "Net price", "number", "number", "lineiteminformation", True, []),
        (
            "hs_discount_percentage",
            "Discount Percentage",
            "number",
            "number",
            "lineiteminformation",
            False,
            [],
        ),
        ("hs_product_id", "Product ID", "number", "number", "lineiteminformation", False, []),
    ],
    "0-46": [
        ("hs_createdate", "Created at", "datetime", "date", "engagement", True, []),
        ("hs_lastmodifieddate", "Last Modified Date", "datetime", "date", "engagement", True, []),
        ("hs_object_id", "Record ID", "number", "number", "engagement", True, []),
        ("hs_timestamp", "Activity date", "datetime", "date", "engagement", False, []),
        ("hs_note_body", "Note body", "string", "html", "engagement", False, []),
    ],
}

DEFAULT_GROUPS: dict[str, list[tuple[str, str]]] = {
    "0-1": [("contactinformation", "Contact information")],
    "0-2": [("companyinformation", "Company information")],
    "0-3": [("dealinformation", "Deal information")],
    "0-8": [("lineiteminformation", "Line item information")],
    "0-46": [("engagement", "Engagement")],
}


@dataclass(frozen=True)
class AssociationType:
    """One directed association type: ``from -> to`` with its id, category and label."""

    from_type: str
    to_type: str
    type_id: int
    category: str
    label: str | None
    name: str = ""
    inverse_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# HubSpot-defined association types between the objects above (direction matters: deal -> company
# 5 is "Primary", company -> deal 6 is its inverse). Unlabeled types always exist next to labels.
HUBSPOT_DEFINED: list[tuple[str, str, int, str | None, int]] = [
    ("0-3", "0-2", 341, None, 342),
    ("0-2", "0-3", 342, None, 341),
    ("0-3", "0-2", 5, "Primary", 6),
    ("0-2", "0-3", 6, "Primary", 5),
    ("0-3", "0-1", 3, None, 4),
    ("0-1", "0-3", 4, None, 3),
    ("0-3", "0-8", 19, None, 20),
    ("0-8", "0-3", 20, None, 19),
    ("0-1", "0-2", 279, None, 280),
    ("0-2", "0-1", 280, None, 279),
    ("0-1", "0-2", 1, "Primary", 2),
    ("0-2", "0-1", 2, "Primary", 1),
    ("0-46", "0-3", 214, None, 213),
    ("0-3", "0-46", 213, None, 214),
    ("0-46", "0-2", 190, None, 189),
    ("0-2", "0-46", 189, None, 190),
    ("0-46", "0-1", 202, None, 201),
    ("0-1", "0-46", 201, None, 202),
]

# Pairs where HubSpot lets a portal define its own labels (not line items or notes).
LABELLED_PAIRS = frozenset(
    (a, b) for a in ("0-1", "0-2", "0-3") for b in ("0-1", "0-2", "0-3") if a != b
)
FIRST_USER_DEFINED_TYPE_ID = 1001
