"""The emulated org's data operations: read, create, update, upsert, delete and query records.

HTTP lives in ``app``; this module raises ``SalesforceError`` with the status and error code
Salesforce would send, so the app only renders them.
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from sandbox.common import StateStore
from sandbox.salesforce.schema import (
    RECORD_ID,
    SCHEMA,
    Field,
    SObjectType,
    WriteError,
    check_value,
    render,
    sobject,
)
from sandbox.salesforce.seed import record_id
from sandbox.salesforce.soql import (
    Evaluator,
    Record,
    SoqlError,
    attributes,
    parse,
    pinned_id,
)

MAX_BATCH_SIZE = 2000
MAX_OPEN_CURSORS = 200


class SalesforceError(Exception):
    """An error response: HTTP status and one ``{"message", "errorCode"}`` entry."""

    def __init__(
        self, status: int, error_code: str, message: str, fields: list[str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.fields = fields


def not_found() -> SalesforceError:
    return SalesforceError(404, "NOT_FOUND", "The requested resource does not exist")


def now_stamp() -> str:
    """The current time in the REST API's datetime format (milliseconds, ``+0000``)."""
    now = dt.datetime.now(dt.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}+0000"


class Org:
    """The org's records in a ``StateStore`` plus the open query cursors (memory only)."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self._cursors: dict[str, list[Record]] = {}
        self._cursor_numbers = itertools.count(1)

    # --- lookups ---------------------------------------------------------------------------

    def type(self, name: str) -> SObjectType:
        type_ = sobject(name)
        if type_ is None:
            raise not_found()
        return type_

    def table(self, type_name: str) -> dict[str, Record]:
        tables: dict[str, dict[str, Record]] = self.store.data["objects"]
        return tables.setdefault(type_name, {})

    def _find(self, type_name: str, record_id_: str) -> Record | None:
        table = self.table(type_name)
        if len(record_id_) == 15:
            # A 15-character id is the case-sensitive prefix of the 18-character one.
            return next((r for i, r in table.items() if i[:15] == record_id_), None)
        return table.get(record_id_)

    def lookup(self, type_name: str, record_id_: str) -> Record | None:
        record = self._find(type_name, record_id_)
        return None if record is None or record.get("IsDeleted") else record

    def rows(self, type_name: str, include_deleted: bool = False) -> list[Record]:
        return [r for r in self.table(type_name).values() if include_deleted or not r["IsDeleted"]]

    def get(self, type_: SObjectType, record_id_: str) -> Record:
        if not RECORD_ID.fullmatch(record_id_):
            # Salesforce reads a path segment that cannot be a record id as an external id field.
            raise SalesforceError(
                404,
                "NOT_FOUND",
                f"Provided external ID field does not exist or is not accessible: {record_id_}",
            )
        record = self._find(type_.name, record_id_)
        if record is None:
            raise not_found()
        if record.get("IsDeleted"):
            raise SalesforceError(404, "ENTITY_IS_DELETED", "entity is deleted")
        return record

    def render_record(
        self, type_: SObjectType, record: Record, api_base: str, fields: list[str] | None = None
    ) -> Record:
        chosen = type_.fields
        if fields:
            chosen = tuple(self._field(type_, name, writing=False) for name in fields)
        out: Record = {"attributes": attributes(type_.name, record["Id"], api_base)}
        out.update({f.name: render(f, record.get(f.name)) for f in chosen})
        return out

    def by_external_id(self, type_: SObjectType, field_name: str, value: str) -> list[Record]:
        field_ = type_.field(field_name)
        if field_ is None or not (field_.external_id or field_.name == "Id"):
            raise SalesforceError(
                404,
                "NOT_FOUND",
                f"Provided external ID field does not exist or is not accessible: {field_name}",
            )
        return [r for r in self.rows(type_.name) if r.get(field_.name) == value]

    # --- writes ----------------------------------------------------------------------------

    def _field(self, type_: SObjectType, name: str, writing: bool) -> Field:
        field_ = type_.field(name)
        if field_ is None:
            raise SalesforceError(
                400,
                "INVALID_FIELD",
                f"No such column '{name}' on sobject of type {type_.name}",
                [name],
            )
        if writing and not field_.updateable:
            raise SalesforceError(
                400,
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {field_.name}. Please check the security "
                "settings of this field and verify that it is read/write for your profile or "
                "permission set.",
                [field_.name],
            )
        return field_

    def _checked(self, type_: SObjectType, body: Any) -> Record:
        if not isinstance(body, dict):
            raise SalesforceError(
                400, "JSON_PARSER_ERROR", "The request body must be a JSON object of field values"
            )
        values: Record = {}
        for name, value in body.items():
            if name == "attributes":
                continue
            field_ = self._field(type_, name, writing=True)
            try:
                values[field_.name] = check_value(type_, field_, value)
            except WriteError as exc:
                raise SalesforceError(400, exc.error_code, exc.message, exc.fields) from None
            reference = field_.reference_to
            if reference and value is not None and self.lookup(reference, value) is None:
                raise SalesforceError(
                    400,
                    "INVALID_CROSS_REFERENCE_KEY",
                    f"invalid cross reference id: {value}",
                    [field_.name],
                )
        return values

    def create(self, type_: SObjectType, body: Any) -> str:
        values = self._checked(type_, body)
        missing = [f.name for f in type_.fields if f.required and values.get(f.name) is None]
        if missing:
            raise SalesforceError(
                400,
                "REQUIRED_FIELD_MISSING",
                f"Required fields are missing: [{', '.join(missing)}]",
                missing,
            )
        with self.store.lock:
            sequence = int(self.store.data["sequence"])
            self.store.data["sequence"] = sequence + 1
            new_id = record_id(type_.key_prefix, sequence)
            stamp = now_stamp()
            record: Record = {f.name: None for f in type_.fields}
            record.update(values)
            record.update(Id=new_id, IsDeleted=False, CreatedDate=stamp, LastModifiedDate=stamp)
            self.table(type_.name)[new_id] = record
            self.store.save()
        return new_id

    def update(self, type_: SObjectType, record_id_: str, body: Any) -> None:
        record = self.get(type_, record_id_)
        values = self._checked(type_, body)
        with self.store.lock:
            record.update(values)
            record["LastModifiedDate"] = now_stamp()
            self.store.save()

    def create_with_external_id(
        self, type_: SObjectType, field_name: str, value: str, body: Any
    ) -> str:
        """The create half of an upsert: a new record carrying ``value`` in its external id."""
        field_ = type_.field(field_name)
        assert field_ is not None
        if field_.name == "Id":
            raise not_found()
        if not isinstance(body, dict):
            return self.create(type_, body)
        return self.create(type_, {**body, field_.name: value})

    def delete(self, type_: SObjectType, record_id_: str) -> None:
        record = self.get(type_, record_id_)
        with self.store.lock:
            # Deleted records go to the recycle bin: hidden from query, visible to queryAll.
            record["IsDeleted"] = True
            record["LastModifiedDate"] = now_stamp()
            self.store.save()

    # --- queries ---------------------------------------------------------------------------

    def query(self, soql: str, include_deleted: bool, api_base: str) -> list[Record]:
        try:
            query = parse(soql)
        except SoqlError as exc:
            raise SalesforceError(400, exc.error_code, exc.message) from None
        assert query.type is not None
        evaluator = Evaluator(self.lookup, self.rows)
        candidates = self._candidates(query.type.name, pinned_id(query.where), include_deleted)
        return [evaluator.project(query, r, api_base) for r in evaluator.select(query, candidates)]

    def _candidates(
        self, type_name: str, record_id_: str | None, include_deleted: bool
    ) -> list[Record]:
        """The rows a WHERE can match: the one record when it pins an exact Id (the look-up by id
        every deal makes), else every row. The whole WHERE is still applied to them; a scan of
        10,000 opportunities per look-up was the emulator's largest cost in a 10,000-deal run."""
        if record_id_ is not None:
            record = self.table(type_name).get(record_id_)
            if record is not None and (include_deleted or not record["IsDeleted"]):
                return [record]
        return self.rows(type_name, include_deleted=include_deleted)

    def page(
        self, records: list[Record], start: int, batch_size: int, query_path: str
    ) -> dict[str, Any]:
        """One page of a result, opening a cursor (``nextRecordsUrl``) when more remain."""
        end = start + batch_size
        page: dict[str, Any] = {
            "totalSize": len(records),
            "done": end >= len(records),
            "records": records[start:end],
        }
        if not page["done"]:
            cursor = f"01gSANDBOX{next(self._cursor_numbers):08d}"
            if len(self._cursors) >= MAX_OPEN_CURSORS:
                self._cursors.pop(next(iter(self._cursors)))
            self._cursors[cursor] = records
            page["nextRecordsUrl"] = f"{query_path}/{cursor}-{end}"
        return page

    def more(self, locator: str, batch_size: int, query_path: str) -> dict[str, Any]:
        cursor, _, offset = locator.rpartition("-")
        records = self._cursors.pop(cursor, None)
        if records is None or not offset.isdigit():
            raise SalesforceError(
                400, "INVALID_QUERY_LOCATOR", "invalid query locator (it may have expired)"
            )
        return self.page(records, int(offset), batch_size, query_path)

    def counts(self) -> dict[str, int]:
        return {name: len(self.rows(name)) for name in SCHEMA}

    def reset(self) -> None:
        self._cursors.clear()
        self.store.reset()
