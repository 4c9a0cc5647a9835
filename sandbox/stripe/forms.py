"""Decode Stripe's form encoding (``items[0][price]=x``, ``expand[]=y``) into nested values.

The SDK always sends indexed lists (``expand[0]``); curl users write ``expand[]``. Both become
Python lists. A dict whose keys are all decimal indices is a list. Anything that cannot be a
consistent tree (``a=1&a[b]=2``, unbalanced brackets) is refused the way Stripe refuses it: a
400 ``invalid_request_error``, never a 500.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from sandbox.stripe.errors import StripeError, invalid_request

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART = re.compile(r"\[([^\[\]]*)\]")
_APPEND = object()


def parse_query(raw: str) -> dict[str, Any]:
    """Parse a query string or form body into a nested dict of strings, lists and dicts."""
    try:
        pairs = parse_qsl(raw, keep_blank_values=True, strict_parsing=False, errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise invalid_request("Invalid request: the body could not be decoded.") from exc
    return parse_pairs(pairs)


def parse_pairs(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for raw_key, value in pairs:
        match = _KEY.match(raw_key)
        if not match:
            raise invalid_request(f"Invalid parameter name: {raw_key}", param=raw_key)
        path: list[Any] = [match.group(1)]
        for part in _PART.findall(match.group(2)):
            path.append(_APPEND if part == "" else part)
        _insert(root, path, value, raw_key)
    return _listify(root)


def _insert(node: dict[str, Any], path: list[Any], value: str, raw_key: str) -> None:
    for position, part in enumerate(path):
        last = position == len(path) - 1
        if part is _APPEND:
            part = str(sum(1 for k in node if k.isdigit()))
        if last:
            if isinstance(node.get(part), dict):
                raise _conflict(raw_key)
            node[part] = value
            return
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise _conflict(raw_key)
        node = child


def _conflict(raw_key: str) -> StripeError:
    return invalid_request(
        f"Invalid parameter: {raw_key} is given both as a value and as a hash.", param=raw_key
    )


def _listify(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    converted = {k: _listify(v) for k, v in value.items()}
    if converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted
