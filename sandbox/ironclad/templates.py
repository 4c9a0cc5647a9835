"""Published workflow templates and launch-form validation, as Ironclad answers a launch.

A template's launch form is a schema of attributes, each with a type (``string``, ``number``,
``email``, ``date``, ``monetaryAmount``, ``boolean``, or ``array`` of ``object`` with its own
schema) and whether it is required. Ironclad refuses a launch with 400 and one error naming one
attribute: ``MISSING_PARAM`` for a required attribute left out, ``INVALID_PARAM`` for a value of
the wrong type, a choice outside the field's options or an attribute the form does not have. The
sandbox answers the same way, with the first problem it finds in the form's order.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import Any

SANDBOX_TEMPLATE_ID = "sandbox-order-form"
SIGNER_ROLE = "Counterparty Signer"

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


def _field(
    type: str,
    name: str,
    required: str = "never",
    *,
    options: list[str] | None = None,
    schema: dict[str, Any] | None = None,
) -> dict[str, Any]:
    field: dict[str, Any] = {"type": type, "displayName": name, "required": required}
    if options is not None:
        field["options"] = {"values": options, "freeTextAllowed": False}
    if schema is not None:
        field["elementType"] = {"type": "object", "displayName": name, "schema": schema}
        field["type"] = "array"
    return field


_LINE_ITEM = {
    "sku": _field("string", "SKU", "always"),
    "description": _field("string", "Description", "always"),
    "kind": _field("string", "Kind", "always", options=["recurring", "one_time"]),
    "quantity": _field("number", "Quantity", "always"),
    "discountPercent": _field("number", "Discount (%)"),
    "unitPrice": _field("monetaryAmount", "Unit price (first year or one-time)", "always"),
    "pricesPerYear": _field("string", "Unit price per billing period, by contract year"),
}

ORDER_FORM_SCHEMA: dict[str, dict[str, Any]] = {
    "counterpartyName": _field("string", "Counterparty legal name", "always"),
    "counterpartyAddress": _field("string", "Counterparty address"),
    "counterpartyBillingEmail": _field("email", "Billing e-mail", "always"),
    "counterpartyTaxId": _field("string", "Tax id"),
    "counterpartySignerName": _field("string", "Counterparty signer name", "always"),
    "counterpartySignerEmail": _field("email", "Counterparty signer e-mail", "always"),
    # Not required: people launch order forms from this template in Ironclad's own UI too, and
    # those workflows carry no deal.
    "opportunityId": _field("string", "CRM opportunity id"),
    "qtcDealId": _field("string", "Quote-to-cash deal id"),
    "quoteId": _field("string", "Quote id", "always"),
    "currency": _field("string", "Currency", "always"),
    "termMonths": _field("number", "Term (months)", "always"),
    "billingFrequency": _field(
        "string", "Billing frequency", "always", options=["monthly", "quarterly", "annual"]
    ),
    "paymentTermsDays": _field("number", "Payment terms (days)", "always"),
    "paymentTerms": _field("string", "Payment terms"),
    "startDate": _field("string", "Start"),
    "upliftPercent": _field("number", "Annual uplift (%)"),
    "validUntil": _field("date", "Quote valid until"),
    "lineItems": _field("array", "Line items", "always", schema=_LINE_ITEM),
    "firstInvoiceTotal": _field("monetaryAmount", "First invoice total", "always"),
    "annualRecurringRevenue": _field("monetaryAmount", "Annual recurring revenue"),
    "totalContractValue": _field("monetaryAmount", "Total contract value", "always"),
    "paymentSchedule": _field("string", "Payment schedule"),
}


def sandbox_templates() -> dict[str, dict[str, Any]]:
    """The templates the sandbox account has published, by id."""
    return {
        SANDBOX_TEMPLATE_ID: {
            "id": SANDBOX_TEMPLATE_ID,
            "name": "Order Form",
            "schema": ORDER_FORM_SCHEMA,
            "signerRole": SIGNER_ROLE,
            "signerNameAttribute": "counterpartySignerName",
            "signerEmailAttribute": "counterpartySignerEmail",
            "titleAttribute": "counterpartyName",
        }
    }


class LaunchError(Exception):
    """A refused launch: Ironclad's ``{code, message, param}`` with status 400."""

    def __init__(self, code: str, message: str, param: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _check_value(field: dict[str, Any], value: Any, param: str) -> None:
    kind = field["type"]
    ok: bool
    if kind == "string":
        ok = isinstance(value, str)
    elif kind == "number":
        ok = _is_number(value)
    elif kind == "boolean":
        ok = isinstance(value, bool)
    elif kind == "email":
        ok = isinstance(value, str) and bool(_EMAIL.match(value))
    elif kind == "date":
        ok = isinstance(value, str) and _is_iso_date(value)
    elif kind == "monetaryAmount":
        ok = (
            isinstance(value, dict)
            and set(value) == {"amount", "currency"}
            and _is_number(value["amount"])
            and isinstance(value["currency"], str)
            and bool(_CURRENCY.match(value["currency"]))
        )
    elif kind == "array":
        if not isinstance(value, list):
            raise LaunchError("INVALID_PARAM", f"{param} must be an array", param)
        element = field.get("elementType", {})
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                raise LaunchError("INVALID_PARAM", "array element must be an object", param)
            check_attributes(element.get("schema", {}), item, prefix=f"{param}[{index}].")
        return
    else:
        ok = True
    if not ok:
        raise LaunchError(
            "INVALID_PARAM", f"invalid value for attribute of type {kind}: {value!r}", param
        )
    options = field.get("options")
    if options and not options["freeTextAllowed"] and value not in options["values"]:
        raise LaunchError(
            "INVALID_PARAM",
            f"value {value!r} is not one of the options {options['values']}",
            param,
        )


def _is_iso_date(value: str) -> bool:
    try:
        date.fromisoformat(value[:10])
    except ValueError:
        return False
    return True


def check_attributes(
    schema: dict[str, dict[str, Any]], attributes: dict[str, Any], *, prefix: str = ""
) -> None:
    """Raise ``LaunchError`` for the first attribute Ironclad would refuse."""
    for name, field in schema.items():
        value = attributes.get(name)
        if value is None or value == "" or value == []:
            if field["required"] == "always":
                raise LaunchError("MISSING_PARAM", "missing required attribute", prefix + name)
            continue
        _check_value(field, value, prefix + name)
    for name in attributes:
        if name not in schema:
            raise LaunchError("INVALID_PARAM", "attribute is not on the launch form", prefix + name)
