"""Stripe's search query language, the subset the sandbox needs.

Clauses are ``field:'value'`` (exact), ``field~'value'`` (substring), ``-field:'value'``
(negation), ``metadata['key']:'value'`` and numeric ``created>123`` comparisons, joined by
``AND`` or ``OR`` (not both in one query, as Stripe requires).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sandbox.stripe.errors import invalid_request

_CLAUSE = re.compile(
    r"""\s*(?P<neg>-)?(?P<field>metadata\[(?P<q>['"])(?P<key>[^'"]+)(?P=q)\]|[a-z_]+)\s*
        (?:(?P<op>[:~])\s*(?:'(?P<sval>(?:[^'\\]|\\.)*)'|"(?P<dval>(?:[^"\\]|\\.)*)"|(?P<bare>[^\s'"]+))
          |(?P<cmp>>=|<=|>|<|:)\s*(?P<num>-?\d+))\s*""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Clause:
    field: str
    metadata_key: str | None
    op: str
    value: str
    negate: bool

    def matches(self, obj: dict[str, Any]) -> bool:
        if self.metadata_key is not None:
            actual: Any = (obj.get("metadata") or {}).get(self.metadata_key)
        else:
            actual = obj.get(self.field)
        result = _compare(actual, self.op, self.value)
        return not result if self.negate else result


def _compare(actual: Any, op: str, value: str) -> bool:
    if actual is None:
        return False
    if op in (">", "<", ">=", "<="):
        if not isinstance(actual, int):
            return False
        number = int(value)
        return {
            ">": actual > number,
            "<": actual < number,
            ">=": actual >= number,
            "<=": actual <= number,
        }[op]
    if op == "~":
        return value.lower() in str(actual).lower()
    return str(actual) == value


def parse(query: str, fields: frozenset[str]) -> Callable[[dict[str, Any]], bool]:
    """Compile ``query`` into a predicate; unknown fields and bad syntax are 400s as on Stripe."""
    if not query.strip():
        raise invalid_request("The query must not be empty.", param="query")
    parts = re.split(r"\s+(AND|OR)\s+", query.strip())
    clauses = [_clause(text, fields) for text in parts[0::2]]
    joiners = set(parts[1::2])
    if len(joiners) > 1:
        raise invalid_request(
            "Search queries cannot combine AND and OR in the same query.", param="query"
        )
    if joiners == {"OR"}:
        return lambda obj: any(c.matches(obj) for c in clauses)
    return lambda obj: all(c.matches(obj) for c in clauses)


def _clause(text: str, fields: frozenset[str]) -> Clause:
    match = _CLAUSE.fullmatch(text)
    if not match:
        raise invalid_request(f"Invalid search query near: {text!r}.", param="query")
    key = match.group("key")
    field = "metadata" if key is not None else match.group("field")
    if field not in fields:
        raise invalid_request(f"Field '{field}' is not supported for this search.", param="query")
    if match.group("cmp") and match.group("cmp") != ":":
        return Clause(field, key, match.group("cmp"), match.group("num"), bool(match.group("neg")))
    value = next(
        v
        for v in (match.group("sval"), match.group("dval"), match.group("bare"), match.group("num"))
        if v is not None
    )
    op = match.group("op") or ":"
    if op == "~" and len(value) < 3:
        raise invalid_request("Substring searches need at least 3 characters.", param="query")
    return Clause(
        field, key, op, value.replace("\\'", "'").replace('\\"', '"'), bool(match.group("neg"))
    )
