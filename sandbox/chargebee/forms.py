"""Chargebee's bracketed form and query encoding, read back into nested values.

The SDK flattens parameters the way Chargebee documents them:

- ``billing_address[line1]=x``: a sub-object;
- ``subscription_items[item_price_id][0]=p``: a list of objects, the index last;
- ``coupon_ids[0]=c``: a list of scalars;
- ``customer_id[is]=c`` or ``status[in]=["a","b"]``: list filters;
- ``meta_data={...}``: a JSON document in one field.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any
from urllib.parse import parse_qsl

from sandbox.chargebee.errors import wrong_value

_KEY = re.compile(r"^([A-Za-z0-9_]+)((?:\[[A-Za-z0-9_]*\])*)$")


def parse_pairs(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Nest ``name[a][0]=v`` pairs; lists of objects come back as lists ordered by index."""
    out: dict[str, Any] = {}
    indexed: dict[str, dict[int, dict[str, str]]] = {}
    for key, value in pairs:
        match = _KEY.match(key)
        if match is None:
            raise wrong_value(key, "is not a valid parameter name")
        name, rest = match.group(1), match.group(2)
        parts = re.findall(r"\[([A-Za-z0-9_]*)\]", rest)
        if not parts:
            out[name] = value
        elif len(parts) == 1 and parts[0].isdigit():
            out.setdefault(name, {})[int(parts[0])] = value
        elif len(parts) == 1:
            out.setdefault(name, {})[parts[0]] = value
        elif len(parts) == 2 and parts[1].isdigit():
            indexed.setdefault(name, {}).setdefault(int(parts[1]), {})[parts[0]] = value
        else:
            raise wrong_value(key, "is not a valid parameter name")
    for name, value in list(out.items()):
        if isinstance(value, dict) and value and all(isinstance(k, int) for k in value):
            out[name] = [value[i] for i in sorted(value)]
    for name, rows in indexed.items():
        out[name] = [rows[i] for i in sorted(rows)]
    return out


def parse_body(body: bytes) -> dict[str, Any]:
    return parse_pairs(parse_qsl(body.decode("utf-8"), keep_blank_values=True))


def json_param(name: str, value: Any) -> Any:
    """A parameter Chargebee takes as a JSON document (``meta_data``)."""
    if not isinstance(value, str):
        raise wrong_value(name, "must be a JSON object")
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise wrong_value(name, "invalid JSON") from exc
    if not isinstance(parsed, dict):
        raise wrong_value(name, "must be a JSON object")
    return parsed


def list_value(name: str, value: str) -> list[str]:
    """The value of an ``[in]`` / ``[not_in]`` filter: ``["a","b"]``.

    The Python SDK writes the list with ``str()`` (single quotes); the API reads both.
    """
    try:
        parsed = json.loads(value)
    except ValueError:
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError) as exc:
            raise wrong_value(name, "invalid list") from exc
    if not isinstance(parsed, list):
        raise wrong_value(name, "invalid list")
    return [str(v) for v in parsed]


def integer(name: str, value: Any, *, minimum: int | None = None) -> int:
    try:
        number = int(str(value))
    except ValueError as exc:
        raise wrong_value(name, "must be an integer") from exc
    if minimum is not None and number < minimum:
        raise wrong_value(name, f"must be at least {minimum}")
    return number


def boolean(name: str, value: Any) -> bool:
    text = str(value).lower()
    if text not in ("true", "false"):
        raise wrong_value(name, "must be true or false")
    return text == "true"
