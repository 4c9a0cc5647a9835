"""The emulated account: records, their validation and the SuiteQL tables over them.

State is a JSON-able dict (``sandbox.common.StateStore``). Money is kept as decimal strings and
computed with ``Decimal``; it leaves as JSON numbers, as NetSuite sends it.

What NetSuite does and the emulator does too, because an adapter can get each of them wrong:

- ``PUT /record/v1/{type}/eid:{externalId}`` creates the record with that external id or updates
  the one that has it: one record per external id, whatever the number of calls.
- On an update, sublist lines without a ``line`` number are *added* to the record's lines; only
  ``?replace=item`` (the sublist's name) replaces them. A retried upsert without it doubles the
  invoice.
- A record is read back with sublists as links; ``?expandSubResources=true`` inlines their lines.
- References are ``{"id": "..."}``; one to a record that does not exist is ``INVALID_CONTENT``
  ("You have entered an Invalid Field Value ...") with the reference's path, as NetSuite documents.
- An invoice is in its customer's currency, which its subsidiary must have.
- Totals are computed by the account: a taxable item adds tax, so the total can differ from the
  lines the caller sent.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from qtc.models import Catalog
from sandbox.netsuite.suiteql import Row, Table

CENT = Decimal("0.01")
RECORD_TYPES = ("customer", "invoice", "serviceitem", "currency", "subsidiary")
WRITABLE = ("customer", "invoice")
_LINE_NUMBERS = ("quantity", "rate", "amount", "tax1Amt")
# What the emulator keeps for its own rules and NetSuite does not show on the record.
_INTERNAL = frozenset({"currencies", "taxRate"})
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class NsError(Exception):
    """A NetSuite error: HTTP status, ``o:errorCode``, ``detail`` and ``o:errorPath``."""

    def __init__(self, status: int, code: str, detail: str, path: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.path = path


def invalid(path: str, detail: str) -> NsError:
    return NsError(
        400,
        "INVALID_VALUE",
        f"Invalid value for the resource or sub-resource field '{path}'. {detail}",
        path,
    )


def bad_reference(path: str, value: str | None, field: str) -> NsError:
    """A reference to a record that does not exist (or is inactive)."""
    return NsError(
        400,
        "INVALID_CONTENT",
        "Error while accessing resource: You have entered an Invalid Field Value "
        f"{value} for the following field: {field}",
        path,
    )


def seed(catalog: Catalog | None) -> dict[str, Any]:
    """The account as a new sandbox has it: one subsidiary, its currencies, one item per SKU."""
    currencies = {
        "1": {"name": "US Dollar", "symbol": "USD", "isbasecurrency": True},
        "2": {"name": "Euro", "symbol": "EUR", "isbasecurrency": False},
        "3": {"name": "British pound", "symbol": "GBP", "isbasecurrency": False},
        "4": {"name": "Canadian Dollar", "symbol": "CAD", "isbasecurrency": False},
    }
    items: dict[str, Any] = {}
    for index, sku in enumerate(catalog.skus if catalog else []):
        items[str(100 + index)] = {
            "itemId": sku.code,
            "displayName": sku.name,
            "isInactive": False,
            # Stands in for a tax code: percent of each line's amount added as tax.
            "taxRate": "0",
        }
    return {
        "next_id": 1000,
        "next_tran": 1,
        "records": {
            "subsidiary": {
                "1": {"name": "Sandbox Inc.", "currency": "1", "currencies": ["1", "2", "3"]}
            },
            "currency": currencies,
            "serviceitem": items,
            "customer": {},
            "invoice": {},
        },
    }


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _ref_id(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("id"), str | int):
        raise invalid(name, 'A reference is an object {"id": "<internal id>"}.')
    return str(value["id"])


def _number(value: Any, path: str, *, positive: bool = False) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise invalid(path, "The value must be a number.")
    try:
        number = Decimal(str(value))
    except InvalidOperation as exc:
        raise invalid(path, "The value must be a number.") from exc
    if not number.is_finite() or number < 0 or (positive and number == 0):
        raise invalid(
            path, "The value must be a positive number." if positive else "It cannot be negative."
        )
    return number


def _date(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise invalid(path, "Dates are written YYYY-MM-DD.")
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError as exc:
        raise invalid(path, "Dates are written YYYY-MM-DD.") from exc


def _money(value: Decimal) -> str:
    return str(value.quantize(CENT, rounding=ROUND_HALF_UP))


@dataclass
class Account:
    """Operations on the account state; callers hold the store's lock."""

    data: dict[str, Any]
    account_id: str

    def table(self, record_type: str) -> dict[str, dict[str, Any]]:
        records: dict[str, dict[str, Any]] = self.data["records"][record_type]
        return records

    def new_id(self) -> str:
        self.data["next_id"] += 1
        return str(self.data["next_id"])

    def find(self, record_type: str, key: str) -> tuple[str, dict[str, Any]] | None:
        """The record whose internal id is ``key``, or whose external id is ``eid:<key>``."""
        records = self.table(record_type)
        if key.startswith("eid:"):
            external = key[4:]
            for record_id, record in records.items():
                if record.get("externalId") == external:
                    return record_id, record
            return None
        found = records.get(key)
        return (key, found) if found is not None else None

    # --- writes --------------------------------------------------------------------------

    def create(self, record_type: str, body: dict[str, Any], external_id: str | None) -> str:
        external_id = external_id or body.get("externalId")
        if external_id is not None:
            if not isinstance(external_id, str) or not external_id:
                raise invalid("externalId", "The external id must be a non-empty string.")
            if self.find(record_type, "eid:" + external_id) is not None:
                raise NsError(
                    400,
                    "DUP_RCRD",
                    f"A {record_type} record with external ID '{external_id}' already exists.",
                    "externalId",
                )
        record = self._validated(record_type, {}, body, replace=set())
        record["externalId"] = external_id
        record["dateCreated"] = record["lastModifiedDate"] = _now()
        if record_type == "invoice":
            record["tranId"] = f"INV{self.data['next_tran']:05d}"
            self.data["next_tran"] += 1
        record_id = self.new_id()
        self.table(record_type)[record_id] = record
        return record_id

    def update(
        self, record_type: str, record_id: str, body: dict[str, Any], replace: set[str]
    ) -> None:
        current = self.table(record_type)[record_id]
        record = self._validated(record_type, current, body, replace)
        record["lastModifiedDate"] = _now()
        self.table(record_type)[record_id] = record

    def _validated(
        self, record_type: str, current: dict[str, Any], body: dict[str, Any], replace: set[str]
    ) -> dict[str, Any]:
        if record_type == "customer":
            return self._customer(current, body, replace)
        if record_type == "invoice":
            return self._invoice(current, body, replace)
        raise NsError(405, "INVALID_REQUEST", f"The {record_type} record is read-only here.")

    def _check_fields(self, body: dict[str, Any], allowed: set[str]) -> None:
        for name in body:
            if name not in allowed:
                raise NsError(
                    400,
                    "INVALID_CONTENT",
                    f"Invalid field '{name}'. The field does not exist on this record.",
                    name,
                )

    def _merge_sublist(
        self, name: str, current: dict[str, Any], body: dict[str, Any], replace: set[str]
    ) -> list[dict[str, Any]]:
        lines: list[dict[str, Any]] = [dict(line) for line in current.get(name) or []]
        if name not in body:
            return lines
        given = body[name]
        if not isinstance(given, dict) or not isinstance(given.get("items"), list):
            raise invalid(name, 'A sublist is written {"items": [...]}.')
        if name in replace:
            lines = []
        for line in given["items"]:
            if not isinstance(line, dict):
                raise invalid(name, "Each sublist line is an object.")
            number = line.get("line")
            existing = next((old for old in lines if old["line"] == number), None)
            if number is not None and existing is not None:
                existing.update({k: v for k, v in line.items() if k != "line"})
            else:
                next_line = max((old["line"] for old in lines), default=0) + 1
                lines.append({**{k: v for k, v in line.items() if k != "line"}, "line": next_line})
        return lines

    def _customer(
        self, current: dict[str, Any], body: dict[str, Any], replace: set[str]
    ) -> dict[str, Any]:
        self._check_fields(
            body,
            {
                "companyName",
                "email",
                "isPerson",
                "subsidiary",
                "currency",
                "phone",
                "comments",
                "vatRegNumber",
                "externalId",
                "addressBook",
            },
        )
        record = {**current, **{k: v for k, v in body.items() if k != "addressBook"}}
        if not isinstance(record.get("companyName"), str) or not record["companyName"].strip():
            raise NsError(
                400, "USER_ERROR", "Please enter value(s) for: Company Name", "companyName"
            )
        email = record.get("email")
        if email is not None and (not isinstance(email, str) or not _EMAIL.match(email)):
            raise invalid("email", "Enter a valid e-mail address.")
        subsidiary_id = _ref_id(record, "subsidiary")
        if subsidiary_id is None:
            raise NsError(400, "USER_ERROR", "Please enter value(s) for: Subsidiary", "subsidiary")
        subsidiary = self.table("subsidiary").get(subsidiary_id)
        if subsidiary is None:
            raise bad_reference("subsidiary", subsidiary_id, "subsidiary")
        currency_id = _ref_id(record, "currency") or subsidiary["currency"]
        self._check_currency(currency_id, subsidiary, "currency")
        record["subsidiary"] = {"id": subsidiary_id}
        record["currency"] = {"id": currency_id}
        addresses = self._merge_sublist("addressBook", current, body, replace)
        for index, line in enumerate(addresses):
            path = f"addressBook.items[{index}].addressBookAddress"
            address = line.get("addressBookAddress")
            if address is None:
                continue
            if not isinstance(address, dict):
                raise invalid(path, "An address is an object.")
            country = address.get("country")
            if country is not None:
                # A select of ISO 3166 alpha-2 codes (NetSuite's Country list).
                code = _ref_id(address, "country") if isinstance(country, dict) else country
                if not isinstance(code, str) or not _COUNTRY.match(code):
                    raise bad_reference(f"{path}.country", str(code), "country")
        record["addressBook"] = addresses
        return record

    def _check_currency(self, currency_id: str, subsidiary: dict[str, Any], path: str) -> None:
        currency = self.table("currency").get(currency_id)
        if currency is None:
            raise bad_reference(path, currency_id, "currency")
        if currency_id not in subsidiary["currencies"]:
            raise invalid(
                path,
                f"The currency {currency['symbol']} is not available to subsidiary "
                f"{subsidiary['name']}.",
            )

    def _invoice(
        self, current: dict[str, Any], body: dict[str, Any], replace: set[str]
    ) -> dict[str, Any]:
        self._check_fields(
            body,
            {
                "entity",
                "tranDate",
                "dueDate",
                "currency",
                "memo",
                "otherRefNum",
                "externalId",
                "item",
            },
        )
        record = {**current, **{k: v for k, v in body.items() if k != "item"}}
        entity_id = _ref_id(record, "entity")
        if entity_id is None:
            raise NsError(400, "USER_ERROR", "Please enter value(s) for: Customer", "entity")
        customer = self.table("customer").get(entity_id)
        if customer is None:
            raise bad_reference("entity", entity_id, "entity")
        subsidiary = self.table("subsidiary")[customer["subsidiary"]["id"]]
        currency_id = _ref_id(record, "currency") or customer["currency"]["id"]
        self._check_currency(currency_id, subsidiary, "currency")
        if currency_id != customer["currency"]["id"]:
            raise invalid("currency", "The currency is not in the customer's currency list.")
        record["entity"] = {"id": entity_id}
        record["currency"] = {"id": currency_id}
        record["tranDate"] = _date(
            record.get("tranDate") or dt.date.today().isoformat(), "tranDate"
        )
        if record.get("dueDate") is not None:
            record["dueDate"] = _date(record["dueDate"], "dueDate")
            if record["dueDate"] < record["tranDate"]:
                raise invalid("dueDate", "The due date cannot be before the transaction date.")
        stored = [
            {k: Decimal(v) if k in _LINE_NUMBERS else v for k, v in line.items()}
            for line in current.get("item") or []
        ]
        lines = self._merge_sublist("item", {"item": stored}, body, replace)
        if not lines:
            raise NsError(
                400,
                "USER_ERROR",
                "You must enter at least one line item for this transaction.",
                "item",
            )
        subtotal = tax = Decimal(0)
        for index, line in enumerate(lines):
            path = f"item.items[{index}]"
            item_id = _ref_id(line, "item")
            item = self.table("serviceitem").get(item_id or "")
            if item is None or item["isInactive"]:
                raise bad_reference(f"{path}.item", item_id, "item")
            quantity = _number(line.get("quantity", 1), f"{path}.quantity", positive=True)
            rate = _number(line.get("rate", 0), f"{path}.rate")
            amount = (
                _number(line["amount"], f"{path}.amount")
                if "amount" in line
                else (quantity * rate).quantize(CENT, rounding=ROUND_HALF_UP)
            )
            start, end = line.get("revRecStartDate"), line.get("revRecEndDate")
            if start is not None:
                start = _date(start, f"{path}.revRecStartDate")
            if end is not None:
                end = _date(end, f"{path}.revRecEndDate")
            if start and end and end < start:
                raise invalid(f"{path}.revRecEndDate", "The end date is before the start date.")
            for name in line:
                if name not in {
                    "item",
                    "quantity",
                    "rate",
                    "amount",
                    "description",
                    "revRecStartDate",
                    "revRecEndDate",
                    "tax1Amt",
                    "line",
                }:
                    raise NsError(
                        400, "INVALID_CONTENT", f"Invalid field '{name}'.", f"{path}.{name}"
                    )
            line_tax = (amount * Decimal(item["taxRate"]) / 100).quantize(CENT, ROUND_HALF_UP)
            line.update(
                {
                    "item": {"id": item_id},
                    "quantity": str(quantity),
                    "rate": str(rate),
                    "amount": _money(amount),
                    "revRecStartDate": start,
                    "revRecEndDate": end,
                    "tax1Amt": _money(line_tax),
                }
            )
            subtotal += amount
            tax += line_tax
        record["item"] = lines
        record["subtotal"] = _money(subtotal)
        record["taxTotal"] = _money(tax)
        record["total"] = _money(subtotal + tax)
        return record

    def delete(self, record_type: str, record_id: str) -> None:
        if record_type == "customer" and any(
            inv["entity"]["id"] == record_id for inv in self.table("invoice").values()
        ):
            raise NsError(
                400,
                "THIS_RECORD_CANNOT_BE_DELETED_BECAUSE_IT_HAS_DEPENDENT_RECORDS",
                "This record cannot be deleted because it has dependent records.",
            )
        del self.table(record_type)[record_id]

    # --- reads ---------------------------------------------------------------------------

    def render(
        self, record_type: str, record_id: str, base: str, *, expand: bool
    ) -> dict[str, Any]:
        """The record as ``GET`` answers it."""
        record = self.table(record_type)[record_id]
        href = f"{base}/record/v1/{record_type}/{record_id}"
        out: dict[str, Any] = {"links": [{"rel": "self", "href": href}], "id": record_id}
        for name, value in record.items():
            if name in _INTERNAL:
                continue
            if isinstance(value, list):
                out[name] = self._sublist(name, value, href, base, expand)
            elif isinstance(value, dict) and "id" in value:
                out[name] = self._ref(name, value["id"], base)
            elif name in ("subtotal", "taxTotal", "total"):
                out[name] = float(value)
            elif name == "currency" and record_type == "subsidiary":
                out[name] = self._ref(name, value, base)
            elif value is not None:
                out[name] = value
        if record_type == "invoice":
            out["status"] = {"id": "open", "refName": "Open"}
        return out

    def _ref(self, name: str, ref_id: str, base: str) -> dict[str, Any]:
        record_type = {"entity": "customer", "item": "serviceitem"}.get(name, name)
        target = self.data["records"].get(record_type, {}).get(ref_id, {})
        ref_name = (
            target.get("companyName")
            or target.get("symbol")
            or target.get("itemId")
            or target.get("name")
            or ref_id
        )
        return {
            "links": [{"rel": "self", "href": f"{base}/record/v1/{record_type}/{ref_id}"}],
            "id": ref_id,
            "refName": ref_name,
        }

    def _sublist(
        self, name: str, lines: list[dict[str, Any]], href: str, base: str, expand: bool
    ) -> dict[str, Any]:
        links = [{"rel": "self", "href": f"{href}/{name}"}]
        if not expand:
            return {"links": links}
        items = []
        for line in lines:
            shown: dict[str, Any] = {"links": []}
            for key, value in line.items():
                if isinstance(value, dict) and "id" in value:
                    shown[key] = self._ref(key, value["id"], base)
                elif key in ("quantity", "rate", "amount", "tax1Amt"):
                    shown[key] = float(value)
                elif value is not None:
                    shown[key] = value
            items.append(shown)
        return {
            "links": links,
            "count": len(items),
            "hasMore": False,
            "items": items,
            "offset": 0,
            "totalResults": len(items),
        }

    # --- SuiteQL -------------------------------------------------------------------------

    def suiteql_table(self, name: str) -> Table | None:
        def flag(value: Any) -> str:
            return "T" if value else "F"

        if name == "item":
            items = self.table("serviceitem")
            return (
                ["id", "itemid", "displayname", "itemtype", "isinactive", "externalid"],
                [
                    {
                        "id": i,
                        "itemid": r["itemId"],
                        "displayname": r["displayName"],
                        "itemtype": "Service",
                        "isinactive": flag(r["isInactive"]),
                        "externalid": r.get("externalId"),
                    }
                    for i, r in items.items()
                ],
            )
        if name == "currency":
            return (
                ["id", "name", "symbol", "isbasecurrency"],
                [
                    {
                        "id": i,
                        "name": r["name"],
                        "symbol": r["symbol"],
                        "isbasecurrency": flag(r["isbasecurrency"]),
                    }
                    for i, r in self.table("currency").items()
                ],
            )
        if name == "subsidiary":
            return (
                ["id", "name", "currency"],
                [
                    {"id": i, "name": r["name"], "currency": r["currency"]}
                    for i, r in self.table("subsidiary").items()
                ],
            )
        if name == "customer":
            return (
                ["id", "companyname", "email", "externalid", "currency", "subsidiary"],
                [
                    {
                        "id": i,
                        "companyname": r["companyName"],
                        "email": r.get("email"),
                        "externalid": r.get("externalId"),
                        "currency": r["currency"]["id"],
                        "subsidiary": r["subsidiary"]["id"],
                    }
                    for i, r in self.table("customer").items()
                ],
            )
        if name == "transaction":
            rows: list[Row] = [
                {
                    "id": i,
                    "type": "CustInvc",
                    "tranid": r["tranId"],
                    "externalid": r.get("externalId"),
                    "entity": r["entity"]["id"],
                    "trandate": r["tranDate"],
                    "duedate": r.get("dueDate"),
                    "currency": r["currency"]["id"],
                    "memo": r.get("memo"),
                    "foreigntotal": r["total"],
                }
                for i, r in self.table("invoice").items()
            ]
            columns = ["id", "type", "tranid", "externalid", "entity", "trandate", "duedate"]
            return ([*columns, "currency", "memo", "foreigntotal"], rows)
        return None
