"""The emulated portal's data: CRM objects, property definitions and groups, v4 associations with
labels, search and paging.

HTTP lives in ``app``; this module raises ``HubSpotError`` carrying the status, ``category`` and
``errors[]`` HubSpot sends, so the app only renders them. Every stored value is a string, as in
HubSpot; writes are checked against the property's definition (unknown property, read-only value,
an option that is not one of the enumeration's, a malformed number or date).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sandbox.common import StateStore
from sandbox.hubspot.schema import (
    DEFAULT_GROUPS,
    DEFAULT_PROPERTIES,
    FIRST_USER_DEFINED_TYPE_ID,
    HUBSPOT_DEFINED,
    LABELLED_PAIRS,
    OBJECT_TYPES,
    ObjectType,
    object_type,
)

MAX_BATCH_INPUTS = 100
MAX_PAGE = 100
MAX_ASSOCIATION_PAGE = 500
MAX_SEARCH_PAGE = 200
MAX_SEARCH_RESULTS = 10_000
MAX_FILTER_GROUPS = 5
MAX_FILTERS_PER_GROUP = 6
MAX_FILTERS = 18
# A deal's primary company (5) and a contact's primary company (1): one per record.
SINGLE_PRIMARY = {("0-3", "0-2"): 5, ("0-1", "0-2"): 1}
_PROPERTY_NAME = re.compile(r"^[a-z][a-z0-9_]{0,99}$")
_FIELD_TYPES = {
    "string": {"text", "textarea", "html", "phonenumber", "file"},
    "number": {"number", "calculation_equation"},
    "enumeration": {"select", "radio", "checkbox", "booleancheckbox"},
    "bool": {"booleancheckbox"},
    "date": {"date"},
    "datetime": {"date"},
    "phone_number": {"phonenumber"},
}

ChangeListener = Callable[[ObjectType, dict[str, Any], str, str | None, str | None], None]


class HubSpotError(Exception):
    """An error answer: status, HubSpot's ``category``, message and optional ``errors[]``."""

    def __init__(
        self,
        status: int,
        category: str,
        message: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        context: dict[str, list[str]] | None = None,
        sub_category: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.category = category
        self.message = message
        self.errors = errors
        self.context = context
        self.sub_category = sub_category


def now_iso() -> str:
    """HubSpot's timestamp format: ISO 8601, milliseconds, ``Z``."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def object_not_found(type_: ObjectType, object_id: str) -> HubSpotError:
    return HubSpotError(
        404,
        "OBJECT_NOT_FOUND",
        "resource not found",
        context={"id": [object_id], "type": [type_.singular.upper()]},
    )


def validation(message: str, errors: list[dict[str, Any]] | None = None) -> HubSpotError:
    return HubSpotError(400, "VALIDATION_ERROR", message, errors=errors)


def _type_or_400(name: str) -> ObjectType:
    found = object_type(name)
    if found is None:
        raise validation(
            f"Unable to infer object type from: {name}",
            [{"message": f"Unknown object type {name}", "code": "INVALID_OBJECT_TYPE"}],
        )
    return found


def _seed() -> dict[str, Any]:
    stamp = now_iso()
    properties: dict[str, dict[str, Any]] = {}
    groups: dict[str, dict[str, Any]] = {}
    for t in OBJECT_TYPES:
        groups[t.type_id] = {
            name: {"name": name, "label": label, "displayOrder": -1, "archived": False}
            for name, label in DEFAULT_GROUPS[t.type_id]
        }
        properties[t.type_id] = {
            name: _property_record(
                {
                    "name": name,
                    "label": label,
                    "type": type_,
                    "fieldType": field_type,
                    "groupName": group,
                    "options": options,
                },
                stamp,
                hubspot_defined=True,
                read_only_value=read_only,
            )
            for name, label, type_, field_type, group, read_only, options in DEFAULT_PROPERTIES[
                t.type_id
            ]
        }
    association_types = [
        {
            "fromObjectTypeId": a,
            "toObjectTypeId": b,
            "typeId": type_id,
            "category": "HUBSPOT_DEFINED",
            "label": label,
            "name": None,
            "inverseTypeId": inverse,
        }
        for a, b, type_id, label, inverse in HUBSPOT_DEFINED
    ]
    return {
        # Ids are unique per portal in HubSpot; a fresh emulator starts somewhere new so that two
        # sandboxes (or test runs) sharing one Temporal never name the same deal.
        "next_id": secrets.randbelow(80_000_000_000) + 10_000_000_000,
        "next_type_id": FIRST_USER_DEFINED_TYPE_ID,
        "objects": {t.type_id: {} for t in OBJECT_TYPES},
        "properties": properties,
        "groups": groups,
        "association_types": association_types,
        "associations": {},
    }


def _property_record(
    body: Mapping[str, Any],
    stamp: str,
    *,
    hubspot_defined: bool = False,
    read_only_value: bool = False,
) -> dict[str, Any]:
    return {
        "name": body["name"],
        "label": body["label"],
        "type": body["type"],
        "fieldType": body["fieldType"],
        "groupName": body["groupName"],
        "description": body.get("description") or "",
        "options": [
            {
                "label": o.get("label"),
                "value": o.get("value"),
                "displayOrder": o.get("displayOrder", i),
                "hidden": bool(o.get("hidden", False)),
                **({"description": o["description"]} if o.get("description") else {}),
            }
            for i, o in enumerate(body.get("options") or [])
        ],
        "displayOrder": body.get("displayOrder", -1),
        "hasUniqueValue": bool(body.get("hasUniqueValue", False)),
        "hidden": bool(body.get("hidden", False)),
        "formField": bool(body.get("formField", False)),
        "calculated": False,
        "externalOptions": bool(body.get("externalOptions", False)),
        "hubspotDefined": hubspot_defined,
        "archived": False,
        "createdAt": stamp,
        "updatedAt": stamp,
        "modificationMetadata": {
            "archivable": not hubspot_defined,
            "readOnlyDefinition": hubspot_defined,
            "readOnlyValue": read_only_value,
        },
    }


def _epoch_ms(value: str) -> int | None:
    return int(value) if re.fullmatch(r"-?\d{1,15}", value) else None


def _normal_datetime(value: str) -> str | None:
    millis = _epoch_ms(value)
    if millis is not None:
        moment = datetime.fromtimestamp(millis / 1000, UTC)
    else:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _normal_date(value: str) -> str | None:
    millis = _epoch_ms(value)
    if millis is not None:
        if millis % 86_400_000:
            return None  # HubSpot wants date properties at midnight UTC
        return datetime.fromtimestamp(millis / 1000, UTC).date().isoformat()
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        return None


class Portal:
    """One HubSpot account's CRM data, persisted through a ``StateStore``."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.listeners: list[ChangeListener] = []

    @staticmethod
    def initial_state() -> dict[str, Any]:
        return _seed()

    @property
    def data(self) -> dict[str, Any]:
        return self.store.data

    def reset(self) -> None:
        self.store.reset()

    def _new_id(self) -> str:
        value = int(self.data["next_id"])
        self.data["next_id"] = value + 1
        return str(value)

    # --- properties ------------------------------------------------------------------------

    def properties(self, type_: ObjectType) -> dict[str, dict[str, Any]]:
        return self.data["properties"][type_.type_id]

    def groups(self, type_: ObjectType) -> dict[str, dict[str, Any]]:
        return self.data["groups"][type_.type_id]

    def property(self, type_: ObjectType, name: str) -> dict[str, Any]:
        found = self.properties(type_).get(name)
        if found is None or found["archived"]:
            raise HubSpotError(
                404,
                "OBJECT_NOT_FOUND",
                f"Unable to find property {name} on object type {type_.singular.upper()}",
                sub_category="PropertyError.PROPERTY_NOT_FOUND",
                context={"propertyName": [name]},
            )
        return found

    def live_properties(self, type_: ObjectType) -> list[dict[str, Any]]:
        return [p for p in self.properties(type_).values() if not p["archived"]]

    def create_property(self, type_: ObjectType, body: Mapping[str, Any]) -> dict[str, Any]:
        missing = [
            k for k in ("name", "label", "type", "fieldType", "groupName") if not body.get(k)
        ]
        if missing:
            raise validation(
                "Invalid input JSON: missing required fields",
                [
                    {"message": f"{k} is required", "code": "REQUIRED_FIELD", "in": k}
                    for k in missing
                ],
            )
        name = str(body["name"])
        if not _PROPERTY_NAME.match(name):
            raise validation(
                f"Property name {name!r} is invalid: lowercase letters, digits and _ only, "
                "starting with a letter",
                [
                    {
                        "message": "invalid property name",
                        "code": "INVALID_PROPERTY_NAME",
                        "in": "name",
                    }
                ],
            )
        allowed = _FIELD_TYPES.get(str(body["type"]))
        if allowed is None:
            raise validation(
                f"Invalid property type {body['type']!r}",
                [{"message": "unknown type", "code": "INVALID_ENUM_VALUE", "in": "type"}],
            )
        if body["fieldType"] not in allowed:
            raise validation(
                f"fieldType {body['fieldType']!r} is not valid for type {body['type']!r}",
                [{"message": "invalid fieldType", "code": "INVALID_FIELD_TYPE", "in": "fieldType"}],
            )
        if body["type"] == "enumeration" and not body.get("options"):
            raise validation(
                "Enumeration properties need options",
                [{"message": "options are required", "code": "REQUIRED_FIELD", "in": "options"}],
            )
        group = self.groups(type_).get(str(body["groupName"]))
        if group is None or group["archived"]:
            raise validation(
                f"Property group {body['groupName']} does not exist",
                [{"message": "unknown group", "code": "INVALID_GROUP", "in": "groupName"}],
            )
        with self.store.lock:
            existing = self.properties(type_).get(name)
            if existing is not None and not existing["archived"]:
                raise HubSpotError(
                    409,
                    "OBJECT_ALREADY_EXISTS",
                    f"Property {name} already exists",
                    sub_category="PropertyError.PROPERTY_EXISTS",
                    context={"propertyName": [name]},
                )
            record = _property_record(body, now_iso())
            self.properties(type_)[name] = record
            self.store.save()
        return record

    def update_property(
        self, type_: ObjectType, name: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        record = self.property(type_, name)
        if record["modificationMetadata"]["readOnlyDefinition"]:
            raise validation(f"Property {name} is read-only and cannot be updated")
        allowed = {"label", "description", "groupName", "options", "displayOrder", "hidden"}
        updated = {**record, **{k: v for k, v in body.items() if k in allowed}}
        updated = _property_record(updated, record["createdAt"])
        updated["updatedAt"] = now_iso()
        self.properties(type_)[name] = updated
        self.store.save()
        return updated

    def archive_property(self, type_: ObjectType, name: str) -> None:
        record = self.property(type_, name)
        if not record["modificationMetadata"]["archivable"]:
            raise validation(f"Property {name} is HubSpot-defined and cannot be archived")
        record["archived"] = True
        record["archivedAt"] = now_iso()
        for obj in self.data["objects"][type_.type_id].values():
            obj["properties"].pop(name, None)
        self.store.save()

    def group(self, type_: ObjectType, name: str) -> dict[str, Any]:
        found = self.groups(type_).get(name)
        if found is None or found["archived"]:
            raise HubSpotError(
                404,
                "OBJECT_NOT_FOUND",
                f"Unable to find property group {name} on object type {type_.singular.upper()}",
                sub_category="PropertyGroupError.GROUP_NOT_FOUND",
            )
        return found

    def create_group(self, type_: ObjectType, body: Mapping[str, Any]) -> dict[str, Any]:
        name, label = body.get("name"), body.get("label")
        if not name or not label:
            raise validation(
                "Invalid input JSON: name and label are required",
                [{"message": "required", "code": "REQUIRED_FIELD", "in": "name"}],
            )
        if not _PROPERTY_NAME.match(str(name)):
            raise validation(f"Property group name {name!r} is invalid")
        existing = self.groups(type_).get(str(name))
        if existing is not None and not existing["archived"]:
            raise HubSpotError(
                409,
                "OBJECT_ALREADY_EXISTS",
                f"Property group {name} already exists",
                sub_category="PropertyGroupError.GROUP_EXISTS",
            )
        record = {
            "name": str(name),
            "label": str(label),
            "displayOrder": int(body.get("displayOrder", -1)),
            "archived": False,
        }
        self.groups(type_)[str(name)] = record
        self.store.save()
        return record

    def archive_group(self, type_: ObjectType, name: str) -> None:
        record = self.group(type_, name)
        if any(p["groupName"] == name for p in self.live_properties(type_)):
            raise validation(f"Property group {name} still has properties")
        record["archived"] = True
        self.store.save()

    # --- values ----------------------------------------------------------------------------

    def _checked_values(
        self, type_: ObjectType, values: Mapping[str, Any], current: Mapping[str, str] | None
    ) -> dict[str, str | None]:
        """Property values as HubSpot stores them; every invalid one reported at once."""
        if not isinstance(values, Mapping):
            raise validation("Invalid input JSON: properties must be an object")
        checked: dict[str, str | None] = {}
        problems: list[dict[str, Any]] = []

        def problem(name: str, code: str, message: str) -> None:
            problems.append({"message": message, "code": code, "context": {"propertyName": [name]}})

        for name, raw in values.items():
            definition = self.properties(type_).get(name)
            if definition is None or definition["archived"]:
                problem(name, "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist')
                continue
            if definition["modificationMetadata"]["readOnlyValue"]:
                problem(name, "READ_ONLY_VALUE", f'"{name}" is a read only property')
                continue
            if raw is None or raw == "":
                checked[name] = None
                continue
            text = ("true" if raw else "false") if isinstance(raw, bool) else str(raw).strip()
            kind = definition["type"]
            if kind == "number":
                try:
                    Decimal(text)
                except InvalidOperation:
                    problem(name, "INVALID_DECIMAL", f"{text} was not a valid number.")
                    continue
            elif kind == "enumeration":
                allowed = [o["value"] for o in definition["options"]]
                chosen = text.split(";") if definition["fieldType"] == "checkbox" else [text]
                bad = [c for c in chosen if c not in allowed]
                if bad:
                    problem(
                        name,
                        "INVALID_OPTION",
                        f"{bad[0]} was not one of the allowed options: "
                        + ", ".join(str(a) for a in allowed),
                    )
                    continue
            elif kind == "bool":
                if text.lower() not in ("true", "false"):
                    problem(name, "INVALID_BOOLEAN", f"{text} is not a valid boolean")
                    continue
                text = text.lower()
            elif kind == "date":
                normal = _normal_date(text)
                if normal is None:
                    problem(
                        name,
                        "INVALID_DATE",
                        f"{text} is not a valid date: use YYYY-MM-DD or epoch milliseconds at "
                        "midnight UTC",
                    )
                    continue
                text = normal
            elif kind == "datetime":
                normal = _normal_datetime(text)
                if normal is None:
                    problem(name, "INVALID_DATETIME", f"{text} is not a valid datetime")
                    continue
                text = normal
            elif len(text) > 65_536:
                problem(name, "INVALID_LENGTH", f"{name} is longer than 65536 characters")
                continue
            checked[name] = text
        if problems:
            listed = json.dumps(
                [
                    {
                        "isValid": False,
                        "message": p["message"],
                        "error": p["code"],
                        "name": p["context"]["propertyName"][0],
                    }
                    for p in problems
                ]
            )
            raise validation(f"Property values were not valid: {listed}", problems)
        return checked

    # --- objects ---------------------------------------------------------------------------

    def _objects(self, type_: ObjectType) -> dict[str, dict[str, Any]]:
        return self.data["objects"][type_.type_id]

    def get(
        self, type_: ObjectType, object_id: str, id_property: str | None = None
    ) -> dict[str, Any]:
        if id_property and id_property != "hs_object_id":
            definition = self.property(type_, id_property)
            if not definition["hasUniqueValue"]:
                raise validation(f"{id_property} is not a unique property")
            for obj in self._objects(type_).values():
                if obj["properties"].get(id_property) == object_id:
                    return obj
            raise object_not_found(type_, object_id)
        found = self._objects(type_).get(object_id)
        if found is None:
            raise object_not_found(type_, object_id)
        return found

    def render(
        self,
        type_: ObjectType,
        obj: Mapping[str, Any],
        properties: Iterable[str] | None = None,
        associations: Iterable[str] | None = None,
    ) -> dict[str, Any]:
        wanted = list(properties) if properties else list(type_.default_properties)
        always = ("hs_object_id", "createdate", type_.modified_property)
        if type_.type_id == "0-46":
            always = ("hs_object_id", "hs_createdate", "hs_lastmodifieddate")
        shown: dict[str, str | None] = {}
        defined = self.properties(type_)
        for name in [*always, *wanted]:
            definition = defined.get(name)
            if definition is None or definition["archived"]:
                continue
            shown[name] = obj["properties"].get(name)
        rendered: dict[str, Any] = {
            "id": obj["id"],
            "properties": shown,
            "createdAt": obj["createdAt"],
            "updatedAt": obj["updatedAt"],
            "archived": False,
        }
        if associations:
            found: dict[str, Any] = {}
            for name in associations:
                to_type = object_type(name)
                if to_type is None:
                    continue
                results = [
                    {"id": to_id, "type": self._v3_type_name(type_, to_type, type_id)}
                    for to_id, type_ids in self._links(type_, obj["id"], to_type)
                    for type_id in type_ids
                ]
                if results:
                    found[to_type.plural] = {"results": results}
            if found:
                rendered["associations"] = found
        return rendered

    def _v3_type_name(self, from_type: ObjectType, to_type: ObjectType, type_id: int) -> str:
        definition = self._association_type(from_type, to_type, type_id)
        base = f"{from_type.singular}_to_{to_type.singular}"
        if definition is None or definition["category"] != "HUBSPOT_DEFINED":
            return (definition or {}).get("name") or str(type_id)
        if definition["label"] is None and (self._primary_type(from_type, to_type) is not None):
            return f"{base}_unlabeled"
        return base

    def _primary_type(self, from_type: ObjectType, to_type: ObjectType) -> int | None:
        return SINGLE_PRIMARY.get((from_type.type_id, to_type.type_id))

    def create(self, type_: ObjectType, body: Mapping[str, Any]) -> dict[str, Any]:
        values = self._checked_values(type_, body.get("properties") or {}, None)
        missing = [name for name in type_.required if not values.get(name)]
        if missing:
            raise validation(
                f"Missing required properties: {', '.join(missing)}",
                [
                    {
                        "message": f"{name} is required",
                        "code": "REQUIRED_PROPERTY",
                        "context": {"propertyName": [name]},
                    }
                    for name in missing
                ],
            )
        planned = self._planned_associations(type_, body.get("associations") or [])
        stamp = now_iso()
        with self.store.lock:
            new_id = self._new_id()
            props = {k: v for k, v in values.items() if v is not None}
            props.update(hs_object_id=new_id)
            created_key = "hs_createdate" if type_.type_id == "0-46" else "createdate"
            props[created_key] = stamp
            props[type_.modified_property] = stamp
            if type_.type_id == "0-3":
                props.setdefault("pipeline", "default")
            if type_.type_id == "0-8":
                self._line_amount(props)
            obj = {"id": new_id, "properties": props, "createdAt": stamp, "updatedAt": stamp}
            self._objects(type_)[new_id] = obj
            for to_type, to_id, type_ids in planned:
                self._associate(type_, new_id, to_type, to_id, type_ids)
            self.store.save()
        # A value set at creation is a change too: HubSpot sends its propertyChange event.
        for name, value in values.items():
            if value is not None:
                for listener in self.listeners:
                    listener(type_, obj, name, None, value)
        return obj

    @staticmethod
    def _line_amount(props: dict[str, Any]) -> None:
        """A line item's ``amount`` is computed by HubSpot: price x quantity less the discount."""
        try:
            price = Decimal(props.get("price") or "0")
            quantity = Decimal(props.get("quantity") or "0")
            discount = Decimal(props.get("hs_discount_percentage") or "0")
        except InvalidOperation:
            return
        amount = price * quantity * (1 - discount / 100)
        props["amount"] = str(amount.quantize(Decimal("0.01")))

    def update(
        self, type_: ObjectType, object_id: str, values: Mapping[str, Any], source: str = "API"
    ) -> dict[str, Any]:
        obj = self.get(type_, object_id)
        checked = self._checked_values(type_, values, obj["properties"])
        changes: list[tuple[str, str | None, str | None]] = []
        with self.store.lock:
            for name, value in checked.items():
                old = obj["properties"].get(name)
                if old == value:
                    continue
                if value is None:
                    obj["properties"].pop(name, None)
                else:
                    obj["properties"][name] = value
                changes.append((name, old, value))
            if type_.type_id == "0-8":
                self._line_amount(obj["properties"])
            if changes:
                stamp = now_iso()
                obj["updatedAt"] = stamp
                obj["properties"][type_.modified_property] = stamp
            self.store.save()
        for name, old, new in changes:
            for listener in self.listeners:
                listener(type_, obj, name, old, new)
        return obj

    def archive(self, type_: ObjectType, object_id: str) -> None:
        obj = self._objects(type_).get(object_id)
        if obj is None:
            return  # HubSpot answers 204 for an id that is already gone
        with self.store.lock:
            del self._objects(type_)[object_id]
            key = f"{type_.type_id}:{object_id}"
            links = self.data["associations"].pop(key, {})
            for to_type_id, targets in links.items():
                for to_id in targets:
                    back = self.data["associations"].get(f"{to_type_id}:{to_id}", {})
                    back.get(type_.type_id, {}).pop(object_id, None)
            self.store.save()

    def list_page(
        self, type_: ObjectType, limit: int, after: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        limit = max(1, min(limit, MAX_PAGE))
        ids = sorted(self._objects(type_), key=int)
        start = 0
        if after:
            if not after.isdigit():
                raise validation(f"after must be a paging cursor, got {after!r}")
            start = next((i for i, v in enumerate(ids) if int(v) >= int(after)), len(ids))
        page = ids[start : start + limit]
        next_after = ids[start + limit] if start + limit < len(ids) else None
        return [self._objects(type_)[i] for i in page], next_after

    # --- search ----------------------------------------------------------------------------

    def search(self, type_: ObjectType, body: Mapping[str, Any]) -> dict[str, Any]:
        groups = body.get("filterGroups") or []
        if len(groups) > MAX_FILTER_GROUPS:
            raise validation(f"There can be at most {MAX_FILTER_GROUPS} filterGroups")
        total_filters = 0
        for group in groups:
            filters = group.get("filters") or []
            total_filters += len(filters)
            if len(filters) > MAX_FILTERS_PER_GROUP:
                raise validation(f"There can be at most {MAX_FILTERS_PER_GROUP} filters per group")
        if total_filters > MAX_FILTERS:
            raise validation(f"There can be at most {MAX_FILTERS} filters in total")
        limit = body.get("limit") or 10
        if not isinstance(limit, int) or limit < 1 or limit > MAX_SEARCH_PAGE:
            raise validation(f"limit must be between 1 and {MAX_SEARCH_PAGE}, got {limit!r}")
        after_raw = body.get("after") or "0"
        if not str(after_raw).isdigit():
            raise validation(f"after must be a number, got {after_raw!r}")
        offset = int(after_raw)
        if offset + limit > MAX_SEARCH_RESULTS:
            raise validation(
                f"The search API returns at most {MAX_SEARCH_RESULTS} results for a query"
            )
        query = str(body.get("query") or "").strip().lower()
        matches = [
            obj
            for obj in self._objects(type_).values()
            if (not groups or any(self._group_matches(type_, obj, g) for g in groups))
            and (not query or self._text_matches(type_, obj, query))
        ]
        matches = self._sorted(type_, matches, body.get("sorts") or [])
        page = matches[offset : offset + limit]
        properties = body.get("properties") or None
        result: dict[str, Any] = {
            "total": len(matches),
            "results": [self.render(type_, o, properties) for o in page],
        }
        if offset + limit < len(matches):
            result["paging"] = {"next": {"after": str(offset + limit)}}
        return result

    @staticmethod
    def _text_matches(type_: ObjectType, obj: Mapping[str, Any], query: str) -> bool:
        return any(
            query in str(obj["properties"].get(name) or "").lower()
            for name in (*type_.search_text, "hs_object_id")
        )

    def _sorted(
        self, type_: ObjectType, objs: list[dict[str, Any]], sorts: list[Any]
    ) -> list[dict[str, Any]]:
        ordered = sorted(objs, key=lambda o: int(o["id"]))
        if not sorts:
            return ordered
        # HubSpot sorts by one property; ties keep the id order.
        sort = sorts[0]
        if isinstance(sort, str):
            name, descending = sort.lstrip("-"), sort.startswith("-")
        else:
            name = str(sort.get("propertyName"))
            descending = str(sort.get("direction", "ASCENDING")).upper() == "DESCENDING"

        def key(obj: dict[str, Any]) -> tuple[int, Any]:
            return self._sort_key(type_, name, obj["properties"].get(name))

        ordered.sort(key=key, reverse=descending)
        return ordered

    def _sort_key(self, type_: ObjectType, name: str, value: str | None) -> tuple[int, Any]:
        if value is None:
            return (1, "")
        definition = self.properties(type_).get(name) or {}
        if definition.get("type") == "number":
            return (0, Decimal(value))
        return (0, value.lower())

    def _group_matches(
        self, type_: ObjectType, obj: Mapping[str, Any], group: Mapping[str, Any]
    ) -> bool:
        return all(self._filter_matches(type_, obj, f) for f in group.get("filters") or [])

    def _filter_matches(
        self, type_: ObjectType, obj: Mapping[str, Any], spec: Mapping[str, Any]
    ) -> bool:
        name = str(spec.get("propertyName") or "")
        operator = str(spec.get("operator") or "EQ").upper()
        if name.startswith("associations."):
            to_type = object_type(name.split(".", 1)[1])
            if to_type is None or operator != "EQ":
                raise validation(f"Unsupported association filter {name} {operator}")
            linked = {to_id for to_id, _ in self._links(type_, obj["id"], to_type)}
            return str(spec.get("value")) in linked
        definition = self.properties(type_).get(name)
        if definition is None or definition["archived"]:
            raise validation(
                f"Property {name} does not exist",
                [{"message": f"Unknown property {name}", "code": "PROPERTY_DOESNT_EXIST"}],
            )
        actual = obj["properties"].get(name)
        if operator == "HAS_PROPERTY":
            return actual is not None
        if operator == "NOT_HAS_PROPERTY":
            return actual is None
        if actual is None:
            return operator in ("NEQ", "NOT_IN", "NOT_CONTAINS_TOKEN")

        def key(value: Any) -> Any:
            text = str(value)
            if definition["type"] == "number":
                try:
                    return Decimal(text)
                except InvalidOperation as exc:
                    raise validation(f"{text} is not a number for {name}") from exc
            if definition["type"] in ("date", "datetime"):
                millis = _epoch_ms(text)
                normal = (
                    _normal_datetime(str(millis)) if millis is not None else _normal_datetime(text)
                )
                if normal is None:
                    raise validation(f"{text} is not a date for {name}")
                return normal
            return text.lower()

        value = spec.get("value")
        if operator == "EQ":
            return key(actual) == key(value)
        if operator == "NEQ":
            return key(actual) != key(value)
        if operator in ("LT", "LTE", "GT", "GTE"):
            a, b = key(actual), key(value)
            return {"LT": a < b, "LTE": a <= b, "GT": a > b, "GTE": a >= b}[operator]
        if operator == "BETWEEN":
            return key(value) <= key(actual) <= key(spec.get("highValue"))
        if operator in ("IN", "NOT_IN"):
            inside = key(actual) in {key(v) for v in spec.get("values") or []}
            return inside if operator == "IN" else not inside
        if operator in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
            token = str(value or "").lower().strip("*")
            found = token in str(actual).lower()
            return found if operator == "CONTAINS_TOKEN" else not found
        raise validation(f"Unknown operator {operator}")

    # --- associations ----------------------------------------------------------------------

    def association_types(self, from_type: ObjectType, to_type: ObjectType) -> list[dict[str, Any]]:
        return [
            t
            for t in self.data["association_types"]
            if t["fromObjectTypeId"] == from_type.type_id and t["toObjectTypeId"] == to_type.type_id
        ]

    def _association_type(
        self, from_type: ObjectType, to_type: ObjectType, type_id: int
    ) -> dict[str, Any] | None:
        return next(
            (t for t in self.association_types(from_type, to_type) if t["typeId"] == type_id), None
        )

    def _unlabeled(self, from_type: ObjectType, to_type: ObjectType) -> int:
        found = next(
            (
                t["typeId"]
                for t in self.association_types(from_type, to_type)
                if t["category"] == "HUBSPOT_DEFINED" and t["label"] is None
            ),
            None,
        )
        if found is None:
            raise validation(
                f"{from_type.plural} cannot be associated with {to_type.plural}",
                [{"message": "invalid association", "code": "INVALID_ASSOCIATION_PAIR"}],
            )
        return found

    def _links(
        self, from_type: ObjectType, from_id: str, to_type: ObjectType
    ) -> list[tuple[str, list[int]]]:
        targets = (
            self.data["associations"].get(f"{from_type.type_id}:{from_id}", {}).get(to_type.type_id)
            or {}
        )
        return sorted(((k, list(v)) for k, v in targets.items()), key=lambda kv: int(kv[0]))

    def _checked_specs(self, from_type: ObjectType, to_type: ObjectType, specs: Any) -> list[int]:
        if not isinstance(specs, list) or not specs:
            raise validation("Invalid input JSON: expected a non-empty list of association types")
        type_ids: list[int] = []
        for spec in specs:
            if not isinstance(spec, Mapping):
                raise validation("Invalid input JSON: association types must be objects")
            category = spec.get("associationCategory")
            type_id = spec.get("associationTypeId")
            definition = (
                self._association_type(from_type, to_type, type_id)
                if isinstance(type_id, int)
                else None
            )
            if (
                not isinstance(type_id, int)
                or definition is None
                or definition["category"] != category
            ):
                raise validation(
                    f"{category} {type_id} is not a valid association type from "
                    f"{from_type.singular} to {to_type.singular}",
                    [
                        {
                            "message": "invalid association type",
                            "code": "INVALID_ASSOCIATION_TYPE",
                            "context": {"associationTypeId": [str(type_id)]},
                        }
                    ],
                )
            type_ids.append(type_id)
        return type_ids

    def _planned_associations(
        self, from_type: ObjectType, entries: Any
    ) -> list[tuple[ObjectType, str, list[int]]]:
        """The ``associations`` of a create body, checked before anything is written."""
        planned = []
        for entry in entries if isinstance(entries, list) else []:
            to_id = str(((entry or {}).get("to") or {}).get("id") or "")
            specs = (entry or {}).get("types") or []
            found_type = None
            for t in OBJECT_TYPES:
                if to_id in self._objects(t):
                    ids = [s.get("associationTypeId") for s in specs if isinstance(s, Mapping)]
                    if all(
                        isinstance(i, int) and self._association_type(from_type, t, i) for i in ids
                    ):
                        found_type = t
                        break
            if found_type is None:
                raise validation(
                    f"Association to {to_id or '(no id)'} is invalid: the object does not exist "
                    "or the association type does not fit",
                    [{"message": "invalid association", "code": "INVALID_ASSOCIATION"}],
                )
            planned.append((found_type, to_id, self._checked_specs(from_type, found_type, specs)))
        return planned

    def _associate(
        self,
        from_type: ObjectType,
        from_id: str,
        to_type: ObjectType,
        to_id: str,
        type_ids: list[int],
    ) -> None:
        """Add types (and the unlabeled one, and the inverse direction); keeps one primary."""
        wanted = set(type_ids) | {self._unlabeled(from_type, to_type)}
        primary = self._primary_type(from_type, to_type)
        if primary in wanted:
            for other_id, other_types in self._links(from_type, from_id, to_type):
                if other_id != to_id and primary in other_types:
                    self._drop_types(from_type, from_id, to_type, other_id, {primary})
        for type_id in wanted:
            definition = self._association_type(from_type, to_type, type_id)
            inverse = definition["inverseTypeId"] if definition else None
            self._add_one(from_type, from_id, to_type, to_id, type_id)
            if inverse is not None:
                self._add_one(to_type, to_id, from_type, from_id, inverse)

    def _add_one(
        self, from_type: ObjectType, from_id: str, to_type: ObjectType, to_id: str, type_id: int
    ) -> None:
        bucket = (
            self.data["associations"]
            .setdefault(f"{from_type.type_id}:{from_id}", {})
            .setdefault(to_type.type_id, {})
            .setdefault(to_id, [])
        )
        if type_id not in bucket:
            bucket.append(type_id)
            bucket.sort()

    def _drop_types(
        self,
        from_type: ObjectType,
        from_id: str,
        to_type: ObjectType,
        to_id: str,
        type_ids: set[int],
    ) -> None:
        for type_id in type_ids:
            definition = self._association_type(from_type, to_type, type_id)
            for a, a_id, b, b_id, tid in (
                (from_type, from_id, to_type, to_id, type_id),
                (
                    to_type,
                    to_id,
                    from_type,
                    from_id,
                    definition["inverseTypeId"] if definition else None,
                ),
            ):
                targets = (
                    self.data["associations"].get(f"{a.type_id}:{a_id}", {}).get(b.type_id, {})
                )
                if b_id in targets and tid in targets[b_id]:
                    targets[b_id].remove(tid)

    def associate(
        self, from_type: ObjectType, from_id: str, to_type: ObjectType, to_id: str, specs: Any
    ) -> dict[str, Any]:
        """``PUT /crm/v4/objects/.../associations/{toType}/{toId}`` with labels."""
        type_ids = self._checked_specs(from_type, to_type, specs)
        self._require_pair(from_type, from_id, to_type, to_id)
        with self.store.lock:
            self._associate(from_type, from_id, to_type, to_id, type_ids)
            self.store.save()
        return self.labels_between(from_type, from_id, to_type, to_id)

    def associate_default(
        self, from_type: ObjectType, from_id: str, to_type: ObjectType, to_id: str
    ) -> dict[str, Any]:
        self._require_pair(from_type, from_id, to_type, to_id)
        unlabeled = self._unlabeled(from_type, to_type)
        with self.store.lock:
            self._associate(from_type, from_id, to_type, to_id, [unlabeled])
            self.store.save()
        return {
            "from": {"id": from_id},
            "to": {"id": to_id},
            "associationSpec": {
                "associationCategory": "HUBSPOT_DEFINED",
                "associationTypeId": unlabeled,
            },
        }

    def _require_pair(
        self, from_type: ObjectType, from_id: str, to_type: ObjectType, to_id: str
    ) -> None:
        missing = [
            oid
            for t, oid in ((from_type, from_id), (to_type, to_id))
            if oid not in self._objects(t)
        ]
        if missing:
            raise validation(
                f"One or more ids is invalid: {', '.join(missing)}",
                [
                    {
                        "message": "object does not exist",
                        "code": "INVALID_OBJECT_IDS",
                        "context": {"ids": missing},
                    }
                ],
            )

    def labels_between(
        self, from_type: ObjectType, from_id: str, to_type: ObjectType, to_id: str
    ) -> dict[str, Any]:
        type_ids = dict(self._links(from_type, from_id, to_type)).get(to_id, [])
        labels = [
            d["label"]
            for d in (self._association_type(from_type, to_type, t) for t in type_ids)
            if d and d["label"]
        ]
        return {
            "fromObjectTypeId": from_type.type_id,
            "fromObjectId": from_id,
            "toObjectTypeId": to_type.type_id,
            "toObjectId": to_id,
            "labels": labels,
        }

    def disassociate(
        self, from_type: ObjectType, from_id: str, to_type: ObjectType, to_id: str
    ) -> None:
        with self.store.lock:
            type_ids = set(dict(self._links(from_type, from_id, to_type)).get(to_id, []))
            self._drop_types(from_type, from_id, to_type, to_id, type_ids)
            for a, a_id, b, b_id in (
                (from_type, from_id, to_type, to_id),
                (to_type, to_id, from_type, from_id),
            ):
                targets = (
                    self.data["associations"].get(f"{a.type_id}:{a_id}", {}).get(b.type_id, {})
                )
                if b_id in targets and not targets[b_id]:
                    del targets[b_id]
            self.store.save()

    def association_page(
        self,
        from_type: ObjectType,
        from_id: str,
        to_type: ObjectType,
        after: str | None,
        limit: int,
    ) -> dict[str, Any]:
        limit = max(1, min(limit, MAX_ASSOCIATION_PAGE))
        links = self._links(from_type, from_id, to_type)
        offset = int(after) if after and after.isdigit() else 0
        page = links[offset : offset + limit]
        result: dict[str, Any] = {
            "results": [self._with_labels(from_type, to_type, to_id, ids) for to_id, ids in page]
        }
        if offset + limit < len(links):
            result["paging"] = {"next": {"after": str(offset + limit)}}
        return result

    def _with_labels(
        self, from_type: ObjectType, to_type: ObjectType, to_id: str, type_ids: list[int]
    ) -> dict[str, Any]:
        types = []
        for type_id in type_ids:
            definition = self._association_type(from_type, to_type, type_id) or {}
            types.append(
                {
                    "category": definition.get("category", "HUBSPOT_DEFINED"),
                    "typeId": type_id,
                    "label": definition.get("label"),
                }
            )
        return {"toObjectId": to_id, "associationTypes": types}

    def label_definitions(self, from_type: ObjectType, to_type: ObjectType) -> list[dict[str, Any]]:
        return [
            {"category": t["category"], "typeId": t["typeId"], "label": t["label"]}
            for t in self.association_types(from_type, to_type)
        ]

    def create_label(
        self, from_type: ObjectType, to_type: ObjectType, body: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        label, name = body.get("label"), body.get("name")
        if not label or not name:
            raise validation(
                "Invalid input JSON: label and name are required",
                [{"message": "required", "code": "REQUIRED_FIELD", "in": "label"}],
            )
        if (from_type.type_id, to_type.type_id) not in LABELLED_PAIRS:
            raise validation(
                f"Association labels are not supported between {from_type.plural} and "
                f"{to_type.plural}"
            )
        if any(
            t.get("name") == name
            for t in [
                *self.association_types(from_type, to_type),
                *self.association_types(to_type, from_type),
            ]
        ):
            raise validation(f"An association label named {name} already exists")
        inverse_label = body.get("inverseLabel") or label
        with self.store.lock:
            forward = int(self.data["next_type_id"])
            backward = forward + 1
            self.data["next_type_id"] = forward + 2
            for a, b, tid, lab, inv in (
                (from_type, to_type, forward, label, backward),
                (to_type, from_type, backward, inverse_label, forward),
            ):
                self.data["association_types"].append(
                    {
                        "fromObjectTypeId": a.type_id,
                        "toObjectTypeId": b.type_id,
                        "typeId": tid,
                        "category": "USER_DEFINED",
                        "label": lab,
                        "name": name,
                        "inverseTypeId": inv,
                    }
                )
            self.store.save()
        return [
            {"category": "USER_DEFINED", "typeId": forward, "label": label},
            {"category": "USER_DEFINED", "typeId": backward, "label": inverse_label},
        ]

    def delete_label(self, from_type: ObjectType, to_type: ObjectType, type_id: int) -> None:
        definition = self._association_type(from_type, to_type, type_id)
        if definition is None or definition["category"] != "USER_DEFINED":
            raise HubSpotError(404, "OBJECT_NOT_FOUND", f"No association label {type_id}")
        inverse = definition["inverseTypeId"]
        with self.store.lock:
            self.data["association_types"] = [
                t
                for t in self.data["association_types"]
                if not (t["category"] == "USER_DEFINED" and t["typeId"] in (type_id, inverse))
            ]
            for targets_by_type in self.data["associations"].values():
                for targets in targets_by_type.values():
                    for ids in targets.values():
                        for tid in (type_id, inverse):
                            if tid in ids:
                                ids.remove(tid)
            self.store.save()

    def counts(self) -> dict[str, int]:
        return {t.plural: len(self._objects(t)) for t in OBJECT_TYPES}


def type_from_path(name: str) -> ObjectType:
    return _type_or_400(name)
