"""A small SOQL: parse, check against the schema, evaluate over the emulated org.

Supported: ``SELECT`` of fields, one-level parent fields (``Account.Name``) and child subqueries
(``(SELECT Quantity, Product2.ProductCode FROM OpportunityLineItems)``); ``WHERE`` with ``=``,
``!=``, ``<``, ``<=``, ``>``, ``>=``, ``LIKE``, ``IN``, ``NOT IN``, ``AND``, ``OR``, ``NOT`` and
parentheses; string, number, boolean, ``null``, date and datetime literals; ``ORDER BY``,
``LIMIT`` and ``OFFSET``. Anything else is a ``MALFORMED_QUERY``, an unknown field is an
``INVALID_FIELD`` and an unknown object an ``INVALID_TYPE``, as from Salesforce. String
comparisons are case-insensitive, as in SOQL.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sandbox.salesforce.schema import (
    NUMBER_TYPES,
    SF_DATETIME_FORMAT,
    STRING_TYPES,
    Field,
    SObjectType,
    render,
    sobject,
)

Record = dict[str, Any]


class SoqlError(Exception):
    """A query Salesforce would refuse; ``error_code`` is Salesforce's."""

    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message


# --- tokens --------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
    | (?P<string>'(?:[^'\\]|\\.)*')
    | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))
    | (?P<date>\d{4}-\d{2}-\d{2})
    | (?P<number>-?\d+(?:\.\d+)?)
    | (?P<op><=|>=|!=|<>|=|<|>)
    | (?P<punct>[(),])
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    """,
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}


@dataclass(frozen=True)
class Token:
    kind: str
    text: str


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{text[position:].split()[0]}'")
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append(Token(kind, match.group()))
        position = match.end()
    return tokens


# --- syntax tree ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Literal:
    kind: str  # string | number | date | datetime | boolean | null
    value: Any


@dataclass
class Path:
    """A field reference; ``parts`` are canonical names after ``bind``."""

    parts: list[str]
    field: Field | None = None


@dataclass
class Compare:
    path: Path
    op: str
    value: Literal


@dataclass
class In:
    path: Path
    values: list[Literal]
    negated: bool


@dataclass
class BoolOp:
    op: str  # AND | OR
    operands: list[Condition]


@dataclass
class Not:
    operand: Condition


Condition = Compare | In | BoolOp | Not


@dataclass
class Query:
    items: list[Path | Query]
    sobject: str
    where: Condition | None = None
    order_by: list[tuple[Path, bool]] = field(default_factory=list)  # (path, descending)
    limit: int | None = None
    offset: int | None = None
    type: SObjectType | None = None
    child_field: str | None = None  # for a subquery: the child's field pointing at the parent


# --- parser --------------------------------------------------------------------------------


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.index = 0

    def peek(self, offset: int = 0) -> Token | None:
        at = self.index + offset
        return self.tokens[at] if at < len(self.tokens) else None

    def next(self) -> Token:
        token = self.peek()
        if token is None:
            raise SoqlError("MALFORMED_QUERY", "unexpected end of query")
        self.index += 1
        return token

    def at_keyword(self, *words: str) -> bool:
        token = self.peek()
        return token is not None and token.kind == "ident" and token.text.upper() in words

    def keyword(self, word: str) -> None:
        token = self.next()
        if token.kind != "ident" or token.text.upper() != word:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{token.text}'")

    def punct(self, text: str) -> None:
        token = self.next()
        if token.text != text:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{token.text}'")

    def query(self, nested: bool) -> Query:
        self.keyword("SELECT")
        items: list[Path | Query] = []
        while True:
            token = self.peek()
            if token is not None and token.text == "(":
                if nested:
                    raise SoqlError("MALFORMED_QUERY", "nested subqueries are not supported")
                self.next()
                items.append(self.query(nested=True))
                self.punct(")")
            else:
                items.append(self.path())
            token = self.peek()
            if token is None or token.text != ",":
                break
            self.next()
        self.keyword("FROM")
        name = self.next()
        if name.kind != "ident" or "." in name.text:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{name.text}'")
        query = Query(items=items, sobject=name.text)
        if self.at_keyword("WHERE"):
            self.next()
            query.where = self.disjunction()
        if self.at_keyword("ORDER"):
            self.next()
            self.keyword("BY")
            while True:
                path = self.path()
                descending = False
                if self.at_keyword("ASC", "DESC"):
                    descending = self.next().text.upper() == "DESC"
                query.order_by.append((path, descending))
                token = self.peek()
                if token is None or token.text != ",":
                    break
                self.next()
        if self.at_keyword("LIMIT"):
            self.next()
            query.limit = self.integer()
        if self.at_keyword("OFFSET"):
            self.next()
            query.offset = self.integer()
        token = self.peek()
        if token is not None and not (nested and token.text == ")"):
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{token.text}'")
        return query

    def integer(self) -> int:
        token = self.next()
        if token.kind != "number" or not token.text.isdigit():
            raise SoqlError(
                "MALFORMED_QUERY", f"expected a non-negative integer, not '{token.text}'"
            )
        return int(token.text)

    def path(self) -> Path:
        token = self.next()
        if token.kind != "ident" or token.text.upper() in _RESERVED:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{token.text}'")
        return Path(parts=token.text.split("."))

    def disjunction(self) -> Condition:
        operands = [self.conjunction()]
        while self.at_keyword("OR"):
            self.next()
            operands.append(self.conjunction())
        return operands[0] if len(operands) == 1 else BoolOp("OR", operands)

    def conjunction(self) -> Condition:
        operands = [self.negation()]
        while self.at_keyword("AND"):
            self.next()
            operands.append(self.negation())
        return operands[0] if len(operands) == 1 else BoolOp("AND", operands)

    def negation(self) -> Condition:
        if self.at_keyword("NOT"):
            self.next()
            return Not(self.negation())
        token = self.peek()
        if token is not None and token.text == "(":
            self.next()
            condition = self.disjunction()
            self.punct(")")
            return condition
        return self.comparison()

    def comparison(self) -> Condition:
        path = self.path()
        if self.at_keyword("IN", "NOT"):
            negated = self.next().text.upper() == "NOT"
            if negated:
                self.keyword("IN")
            self.punct("(")
            values = [self.literal()]
            while (token := self.next()).text == ",":
                values.append(self.literal())
            if token.text != ")":
                raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{token.text}'")
            return In(path, values, negated)
        if self.at_keyword("LIKE"):
            self.next()
            return Compare(path, "LIKE", self.literal())
        token = self.next()
        if token.kind != "op":
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{token.text}'")
        return Compare(path, "!=" if token.text == "<>" else token.text, self.literal())

    def literal(self) -> Literal:
        token = self.next()
        if token.kind == "string":
            body = token.text[1:-1]
            return Literal(
                "string", re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)
            )
        if token.kind == "number":
            return Literal("number", float(token.text))
        if token.kind == "date":
            try:
                return Literal("date", dt.date.fromisoformat(token.text).isoformat())
            except ValueError:
                raise SoqlError("MALFORMED_QUERY", f"invalid date: {token.text}") from None
        if token.kind == "datetime":
            return Literal("datetime", _parse_datetime(token.text))
        if token.kind == "ident" and token.text.upper() in ("TRUE", "FALSE"):
            return Literal("boolean", token.text.upper() == "TRUE")
        if token.kind == "ident" and token.text.upper() == "NULL":
            return Literal("null", None)
        raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{token.text}'")


_RESERVED = frozenset(
    {"SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "LIMIT", "OFFSET"}
)


def _parse_datetime(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        value = dt.datetime.strptime(text, SF_DATETIME_FORMAT)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def parse(text: str) -> Query:
    """Parse and bind a SOQL query against the emulated schema."""
    parser = _Parser(tokenize(text))
    query = parser.query(nested=False)
    _bind(query, parent=None)
    return query


# --- binding: names -> schema --------------------------------------------------------------


def _bind(query: Query, parent: SObjectType | None) -> None:
    if parent is None:
        type_ = sobject(query.sobject)
        if type_ is None:
            raise SoqlError(
                "INVALID_TYPE",
                f"sObject type '{query.sobject}' is not supported. If you are attempting to use a "
                "custom object, be sure to append the '__c' after the entity name.",
            )
    else:
        relationship = parent.child(query.sobject)
        if relationship is None:
            raise SoqlError(
                "INVALID_TYPE",
                f"Didn't understand relationship '{query.sobject}' in FROM part of query call. "
                "If you are attempting to use a custom relationship, be sure to append the '__r' "
                "after the custom relationship name.",
            )
        type_ = sobject(relationship.child_type)
        assert type_ is not None
        query.sobject = relationship.name
        query.child_field = relationship.field
    query.type = type_
    for item in query.items:
        if isinstance(item, Query):
            _bind(item, parent=type_)
        else:
            _bind_path(type_, item)
    for path, _ in query.order_by:
        _bind_path(type_, path)
    if query.where is not None:
        _bind_condition(type_, query.where)


def _bind_path(type_: SObjectType, path: Path) -> None:
    current = type_
    canonical: list[str] = []
    for relationship in path.parts[:-1]:
        reference = current.parent(relationship)
        if reference is None or reference.reference_to is None:
            raise SoqlError(
                "INVALID_FIELD",
                f"Didn't understand relationship '{relationship}' in field path. If you are "
                "attempting to use a custom relationship, be sure to append the '__r' after the "
                "custom relationship name.",
            )
        assert reference.relationship_name is not None
        canonical.append(reference.relationship_name)
        parent_type = sobject(reference.reference_to)
        assert parent_type is not None
        current = parent_type
    if len(canonical) > 1:
        raise SoqlError("MALFORMED_QUERY", "only one level of parent relationship is supported")
    leaf = current.field(path.parts[-1])
    if leaf is None:
        raise SoqlError(
            "INVALID_FIELD",
            f"No such column '{path.parts[-1]}' on entity '{current.name}'. If you are attempting "
            "to use a custom field, be sure to append the '__c' after the custom field name.",
        )
    path.parts = [*canonical, leaf.name]
    path.field = leaf


def _bind_condition(type_: SObjectType, condition: Condition) -> None:
    if isinstance(condition, BoolOp):
        for operand in condition.operands:
            _bind_condition(type_, operand)
    elif isinstance(condition, Not):
        _bind_condition(type_, condition.operand)
    else:
        _bind_path(type_, condition.path)
        assert condition.path.field is not None
        values = condition.values if isinstance(condition, In) else [condition.value]
        for value in values:
            _check_literal(condition.path.field, value)
        is_like = isinstance(condition, Compare) and condition.op == "LIKE"
        if is_like and condition.path.field.type not in STRING_TYPES:
            raise SoqlError(
                "INVALID_FIELD", f"invalid operator on field '{condition.path.field.name}': LIKE"
            )


def _expected_kind(field_: Field) -> str:
    if field_.type in STRING_TYPES:
        return "string"
    if field_.type in NUMBER_TYPES:
        return "number"
    return field_.type  # date | datetime | boolean


def _check_literal(field_: Field, value: Literal) -> None:
    expected = _expected_kind(field_)
    if value.kind not in (expected, "null"):
        quoting = "should" if expected == "string" else "should not"
        raise SoqlError(
            "INVALID_FIELD",
            f"value of filter criterion for field '{field_.name}' must be of type {expected} "
            f"and {quoting} be enclosed in quotes",
        )


# --- evaluation ----------------------------------------------------------------------------

Lookup = Callable[[str, str], Record | None]
Rows = Callable[[str], Iterable[Record]]


def _comparable(field_: Field, value: Any) -> Any:
    if value is None:
        return None
    if field_.type in STRING_TYPES:
        return str(value).lower()
    if field_.type in NUMBER_TYPES:
        return float(value)
    if field_.type == "datetime":
        return value if isinstance(value, dt.datetime) else _parse_datetime(value)
    return value


def pinned_id(condition: Condition | None) -> str | None:
    """The Id a WHERE requires (``Id = '...'``, alone or in a top-level AND), if any."""
    if isinstance(condition, Compare):
        if condition.path.parts == ["Id"] and condition.op == "=":
            value = condition.value
            return value.value if value.kind == "string" else None
        return None
    if isinstance(condition, BoolOp) and condition.op == "AND":
        return next(filter(None, (pinned_id(c) for c in condition.operands)), None)
    return None


def _like(pattern: str) -> re.Pattern[str]:
    translated = "".join(
        ".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern
    )
    return re.compile(f"^{translated}$", re.IGNORECASE | re.DOTALL)


class Evaluator:
    """Runs bound queries over records reached through ``lookup`` (by id) and ``rows`` (by type)."""

    def __init__(self, lookup: Lookup, rows: Rows) -> None:
        self.lookup = lookup
        self.rows = rows

    def value(self, type_: SObjectType, record: Record, path: Path) -> Any:
        current_type, current = type_, record
        for relationship in path.parts[:-1]:
            reference = current_type.parent(relationship)
            assert reference is not None and reference.reference_to is not None
            parent_id = current.get(reference.name)
            parent = self.lookup(reference.reference_to, parent_id) if parent_id else None
            if parent is None:
                return None
            parent_type = sobject(reference.reference_to)
            assert parent_type is not None
            current_type, current = parent_type, parent
        return current.get(path.parts[-1])

    def matches(self, type_: SObjectType, record: Record, condition: Condition | None) -> bool:
        if condition is None:
            return True
        if isinstance(condition, BoolOp):
            results = (self.matches(type_, record, c) for c in condition.operands)
            return all(results) if condition.op == "AND" else any(results)
        if isinstance(condition, Not):
            return not self.matches(type_, record, condition.operand)
        field_ = condition.path.field
        assert field_ is not None
        actual = _comparable(field_, self.value(type_, record, condition.path))
        if isinstance(condition, In):
            found = any(actual == _comparable(field_, v.value) for v in condition.values)
            return found != condition.negated
        expected = _comparable(field_, condition.value.value)
        if condition.op == "=":
            return bool(actual == expected)
        if condition.op == "!=":
            return bool(actual != expected)
        if actual is None or expected is None:
            return False
        if condition.op == "LIKE":
            return _like(str(condition.value.value)).match(str(actual)) is not None
        comparisons: dict[str, Callable[[Any, Any], bool]] = {
            "<": lambda a, b: a < b,
            "<=": lambda a, b: a <= b,
            ">": lambda a, b: a > b,
            ">=": lambda a, b: a >= b,
        }
        return comparisons[condition.op](actual, expected)

    def select(self, query: Query, candidates: Iterable[Record]) -> list[Record]:
        """The matching records, ordered, offset and limited (not yet projected)."""
        type_ = query.type
        assert type_ is not None
        selected = [r for r in candidates if self.matches(type_, r, query.where)]
        for path, descending in reversed(query.order_by):
            assert path.field is not None
            field_ = path.field

            def key(record: Record, field_: Field = field_, path: Path = path) -> tuple[bool, Any]:
                value = _comparable(field_, self.value(type_, record, path))
                return (value is not None, value)

            selected.sort(key=key, reverse=descending)
        start = query.offset or 0
        end = None if query.limit is None else start + query.limit
        return selected[start:end]

    def project(self, query: Query, record: Record, api_base: str) -> Record:
        """One record as the query's JSON: attributes, fields, parent objects, child results."""
        type_ = query.type
        assert type_ is not None
        out: Record = {"attributes": attributes(type_.name, record["Id"], api_base)}
        for item in query.items:
            if isinstance(item, Query):
                out[item.sobject] = self._children(item, record, api_base)
                continue
            assert item.field is not None
            if len(item.parts) == 1:
                out[item.field.name] = render(item.field, record.get(item.field.name))
                continue
            relationship = item.parts[0]
            reference = type_.parent(relationship)
            assert reference is not None and reference.reference_to is not None
            parent_id = record.get(reference.name)
            parent = self.lookup(reference.reference_to, parent_id) if parent_id else None
            if parent is None:
                out[relationship] = None
                continue
            nested = out.get(relationship) or {
                "attributes": attributes(reference.reference_to, parent["Id"], api_base)
            }
            nested[item.field.name] = render(item.field, parent.get(item.field.name))
            out[relationship] = nested
        return out

    def _children(self, query: Query, parent: Record, api_base: str) -> Record | None:
        type_ = query.type
        assert type_ is not None and query.child_field is not None
        linked = (r for r in self.rows(type_.name) if r.get(query.child_field) == parent["Id"])
        records = [self.project(query, r, api_base) for r in self.select(query, linked)]
        if not records:
            # Salesforce renders an empty child relationship as null, not an empty list.
            return None
        return {"totalSize": len(records), "done": True, "records": records}


def attributes(type_name: str, record_id: str, api_base: str) -> dict[str, str]:
    return {"type": type_name, "url": f"{api_base}/sobjects/{type_name}/{record_id}"}
