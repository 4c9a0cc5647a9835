"""The SuiteQL subset the emulator answers: one table, filters, ordering.

    SELECT * | col [AS alias], ... FROM table
      [WHERE cond {AND | OR cond}]        -- AND binds tighter; parentheses and NOT allowed
      [ORDER BY col [ASC | DESC], ...]
    cond: operand (= | <> | != | < | > | <= | >=) operand | operand [NOT] IN (lit, ...)
          | operand IS [NOT] NULL
    operand: column | UPPER(column) | LOWER(column) | 'text' | number

Names are case-insensitive, string comparison is case-sensitive (as in NetSuite's Oracle
back end), and every value comes back as a string, booleans as ``T`` / ``F``, as NetSuite sends
them. Anything outside the subset is refused with NetSuite's "Invalid search query" error rather
than answered wrongly.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Row = dict[str, str | None]

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op><>|!=|<=|>=|[=<>(),*]))"
)


class SuiteQLError(ValueError):
    """The query is outside the subset or names an unknown table or column."""


@dataclass
class _Tok:
    kind: str
    value: str


def _tokens(query: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    text = query.rstrip().rstrip(";")
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise SuiteQLError(f"unexpected text at {text[pos : pos + 20]!r}")
        pos = match.end()
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "str":
            value = value[1:-1].replace("''", "'")
        out.append(_Tok(kind, value))
    return out


Operand = Callable[[Row], str | None]
Cond = Callable[[Row], bool]


class _Parser:
    def __init__(self, tokens: list[_Tok], columns: Callable[[str], set[str]]) -> None:
        self.toks = tokens
        self.i = 0
        self.columns_of = columns
        self.columns: set[str] = set()

    def peek(self, *words: str) -> bool:
        if self.i >= len(self.toks):
            return False
        tok = self.toks[self.i]
        return tok.kind in ("name", "op") and tok.value.upper() in words

    def take(self, *words: str) -> str:
        if not self.peek(*words):
            found = self.toks[self.i].value if self.i < len(self.toks) else "end of query"
            raise SuiteQLError(f"expected {' or '.join(words)}, found {found!r}")
        self.i += 1
        return self.toks[self.i - 1].value.upper()

    def name(self) -> str:
        if self.i >= len(self.toks) or self.toks[self.i].kind != "name":
            raise SuiteQLError("expected a name")
        self.i += 1
        return self.toks[self.i - 1].value.lower()

    def column(self) -> str:
        col = self.name()
        if col not in self.columns:
            raise SuiteQLError(f"Field '{col}' for record '{self.table}' was not found")
        return col

    def parse(self) -> tuple[str, list[tuple[str, str]], Cond | None, list[tuple[str, bool]]]:
        self.take("SELECT")
        star = self.peek("*")
        if star:
            self.i += 1
        else:
            start = self.i
            while self.i < len(self.toks) and not self.peek("FROM"):
                self.i += 1
            select_toks = self.toks[start : self.i]
        self.take("FROM")
        self.table = self.name()
        self.columns = self.columns_of(self.table)
        selected: list[tuple[str, str]]
        if star:
            selected = [(c, c) for c in sorted(self.columns)]
        else:
            selected = self._select_list(select_toks)
        where = None
        if self.peek("WHERE"):
            self.i += 1
            where = self.disjunction()
        order: list[tuple[str, bool]] = []
        if self.peek("ORDER"):
            self.i += 1
            self.take("BY")
            while True:
                col = self.column()
                descending = False
                if self.peek("ASC", "DESC"):
                    descending = self.take("ASC", "DESC") == "DESC"
                order.append((col, descending))
                if not self.peek(","):
                    break
                self.i += 1
        if self.i != len(self.toks):
            raise SuiteQLError(f"unsupported clause at {self.toks[self.i].value!r}")
        return self.table, selected, where, order

    def _select_list(self, toks: list[_Tok]) -> list[tuple[str, str]]:
        sub = _Parser(toks, self.columns_of)
        sub.table, sub.columns = self.table, self.columns
        out: list[tuple[str, str]] = []
        while True:
            col = sub.column()
            alias = col
            if sub.peek("AS"):
                sub.i += 1
                alias = sub.name()
            out.append((col, alias))
            if sub.i == len(toks):
                return out
            sub.take(",")

    def disjunction(self) -> Cond:
        parts = [self.conjunction()]
        while self.peek("OR"):
            self.i += 1
            parts.append(self.conjunction())
        return lambda row: any(p(row) for p in parts)

    def conjunction(self) -> Cond:
        parts = [self.condition()]
        while self.peek("AND"):
            self.i += 1
            parts.append(self.condition())
        return lambda row: all(p(row) for p in parts)

    def condition(self) -> Cond:
        if self.peek("NOT"):
            self.i += 1
            inner = self.condition()
            return lambda row: not inner(row)
        if self.peek("("):
            self.i += 1
            inner = self.disjunction()
            self.take(")")
            return inner
        left = self.operand()
        if self.peek("IS"):
            self.i += 1
            negate = self.peek("NOT")
            if negate:
                self.i += 1
            self.take("NULL")
            return lambda row: (left(row) is None) != negate
        negate = self.peek("NOT")
        if negate:
            self.i += 1
        if self.peek("IN"):
            self.i += 1
            self.take("(")
            values: set[str] = set()
            while True:
                values.add(self.literal())
                if self.peek(")"):
                    self.i += 1
                    break
                self.take(",")
            return lambda row: (left(row) in values) != negate
        if negate:
            raise SuiteQLError("NOT must be followed by IN")
        op = self.take("=", "<>", "!=", "<", ">", "<=", ">=")
        right = self.operand()
        return lambda row: _compare(left(row), op, right(row))

    def literal(self) -> str:
        if self.i < len(self.toks) and self.toks[self.i].kind in ("str", "num"):
            self.i += 1
            return self.toks[self.i - 1].value
        raise SuiteQLError("expected a literal")

    def operand(self) -> Operand:
        if self.i < len(self.toks) and self.toks[self.i].kind in ("str", "num"):
            value = self.literal()
            return lambda row: value
        if self.peek("UPPER", "LOWER"):
            fn = str.upper if self.take("UPPER", "LOWER") == "UPPER" else str.lower
            self.take("(")
            col = self.column()
            self.take(")")
            return lambda row: None if row.get(col) is None else fn(row[col] or "")
        col = self.column()
        return lambda row: row.get(col)


def _key(value: str) -> tuple[int, Any]:
    try:
        return (0, float(value))
    except ValueError:
        return (1, value)


def _compare(left: str | None, op: str, right: str | None) -> bool:
    if left is None or right is None:
        return False  # SQL: a comparison with NULL is never true
    a, b = _key(left), _key(right)
    if a[0] != b[0]:
        a, b = (1, left), (1, right)
    return {
        "=": a == b,
        "<>": a != b,
        "!=": a != b,
        "<": a < b,
        ">": a > b,
        "<=": a <= b,
        ">=": a >= b,
    }[op]


Table = tuple[list[str], list[Row]]


def run_query(query: str, tables: Callable[[str], Table | None]) -> list[Row]:
    """Evaluate ``query`` against ``tables(name)``: (its columns, its rows), None if unknown."""

    def columns(table: str) -> set[str]:
        found = tables(table)
        if found is None:
            raise SuiteQLError(f"Record '{table}' was not found")
        return set(found[0])

    parser = _Parser(_tokens(query), columns)
    table, selected, where, order = parser.parse()
    found = tables(table)
    rows = [row for row in (found[1] if found else []) if where is None or where(row)]
    for col, descending in reversed(order):

        def sort_key(row: Row, column: str = col) -> tuple[bool, tuple[int, Any]]:
            return (row.get(column) is None, _key(row.get(column) or ""))

        rows.sort(key=sort_key, reverse=descending)
    return [{alias: row.get(col) for col, alias in selected} for row in rows]
