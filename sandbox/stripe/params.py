"""Check request parameters against the SDK's own typed parameter classes.

``stripe.params.*Params`` are TypedDicts generated from Stripe's OpenAPI spec, so they name every
parameter Stripe accepts on each endpoint. Walking a decoded form against them rejects exactly what
Stripe would reject (``parameter_unknown`` naming ``items[0][pricee]``, ``parameter_missing``) and
turns the form's strings into ints and bools where the spec says so.
"""

from __future__ import annotations

import difflib
import sys
import types
import typing
from functools import cache
from typing import Any, ForwardRef, Literal, NotRequired, Required, Union

from stripe._request_options import RequestOptions
from typing_extensions import is_typeddict

from sandbox.stripe.errors import StripeError, invalid_request, parameter_missing, parameter_unknown

_OPTION_KEYS = frozenset(RequestOptions.__annotations__)

# Parameters older API versions accept that SDK 16.1's generated classes dropped. Phase
# ``iterations`` was replaced by ``duration`` in the SDK's API version, but callers pinned to an
# earlier Stripe-Version still send it, and the issue asks for it.
LEGACY_FIELDS: dict[str, dict[str, Any]] = {
    "SubscriptionScheduleCreateParamsPhase": {"iterations": int},
    "SubscriptionScheduleUpdateParamsPhase": {"iterations": int},
    "SubscriptionScheduleModifyParamsPhase": {"iterations": int},
}


class _Mismatch(Exception):
    """The value does not fit this member of a union; try the next one."""

    def __init__(self, error: StripeError) -> None:
        super().__init__(error.message)
        self.error = error


def _eval(annotation: Any, module: str) -> Any:
    if isinstance(annotation, str):
        annotation = ForwardRef(annotation)
    if isinstance(annotation, ForwardRef):
        namespace = dict(vars(sys.modules[module]))
        namespace.setdefault("Literal", Literal)
        return eval(annotation.__forward_arg__, namespace)  # noqa: S307 - SDK-generated type text
    return annotation


@cache
def _fields(cls: type) -> tuple[dict[str, tuple[Any, str]], frozenset[str]]:
    """The parameter names of a TypedDict with their (raw annotation, module), and required keys."""
    fields: dict[str, tuple[Any, str]] = {}
    for klass in reversed(cls.__mro__):
        for name, annotation in vars(klass).get("__annotations__", {}).items():
            if name not in _OPTION_KEYS:
                fields[name] = (annotation, klass.__module__)
    for name, annotation in LEGACY_FIELDS.get(cls.__name__, {}).items():
        fields.setdefault(name, (annotation, cls.__module__))
    required = frozenset(getattr(cls, "__required_keys__", frozenset())) - _OPTION_KEYS
    return fields, required


def _unwrap(annotation: Any, module: str) -> Any:
    annotation = _eval(annotation, module)
    while typing.get_origin(annotation) in (NotRequired, Required):
        annotation = _eval(typing.get_args(annotation)[0], module)
    return annotation


def coerce(cls: type, raw: dict[str, Any]) -> dict[str, Any]:
    """Validate ``raw`` (decoded form) against params TypedDict ``cls``; return typed values."""
    try:
        return _typed_dict(cls, raw, "")
    except _Mismatch as mismatch:
        raise mismatch.error from None


def _name(prefix: str, key: str | int) -> str:
    return f"{prefix}[{key}]" if prefix else str(key)


def _typed_dict(cls: type, value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Mismatch(invalid_request(f"Invalid object: {path}", param=path or None))
    fields, required = _fields(cls)
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            raise _Mismatch(parameter_unknown(_name(path, key), close[0] if close else None))
        annotation, module = fields[key]
        out[key] = _coerce(_unwrap(annotation, module), item, _name(path, key), module)
    for key in sorted(required):
        if key not in value:
            raise _Mismatch(parameter_missing(_name(path, key)))
    return out


def _is_typed_dict(tp: Any) -> bool:
    return isinstance(tp, type) and is_typeddict(tp)


def _shape(tp: Any) -> str:
    origin = typing.get_origin(tp) or tp
    if (
        _is_typed_dict(tp)
        or origin in (dict, dict)
        or (isinstance(origin, type) and issubclass(origin, dict))
    ):
        return "dict"
    if origin in (list, typing.List):  # noqa: UP006
        return "list"
    return "scalar"


def _coerce(tp: Any, value: Any, path: str, module: str) -> Any:
    tp = _eval(tp, module)
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return _union(typing.get_args(tp), value, path, module)
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise _Mismatch(_not_one_of(path, typing.get_args(tp)))
    if _is_typed_dict(tp):
        return _typed_dict(tp, value, path)
    if origin in (list, typing.List):  # noqa: UP006
        if not isinstance(value, list):
            raise _Mismatch(invalid_request(f"Invalid array: {path}", param=path))
        (item_tp,) = typing.get_args(tp) or (Any,)
        return [_coerce(item_tp, v, _name(path, i), module) for i, v in enumerate(value)]
    if _shape(tp) == "dict":
        if isinstance(value, list):
            value = {str(i): v for i, v in enumerate(value)}
        if not isinstance(value, dict):
            raise _Mismatch(invalid_request(f"Invalid hash: {path}", param=path))
        args = typing.get_args(tp)
        value_tp = args[-1] if args else Any
        return {k: _coerce(value_tp, v, _name(path, k), module) for k, v in value.items()}
    if isinstance(value, (dict, list)):
        raise _Mismatch(invalid_request(f"Invalid {path}: expected a single value", param=path))
    return _scalar(tp, value, path)


def _scalar(tp: Any, value: str, path: str) -> Any:
    if tp is bool:
        if value in ("true", "false"):
            return value == "true"
        raise _Mismatch(
            invalid_request(
                f"Invalid boolean: {value}", param=path, code="parameter_invalid_boolean"
            )
        )
    if tp is int:
        try:
            return int(value)
        except ValueError:
            raise _Mismatch(
                invalid_request(
                    f"Invalid integer: {value}", param=path, code="parameter_invalid_integer"
                )
            ) from None
    if tp is float:
        try:
            return float(value)
        except ValueError:
            raise _Mismatch(
                invalid_request(
                    f"Invalid decimal: {value}", param=path, code="parameter_invalid_decimal"
                )
            ) from None
    return value


def _not_one_of(path: str, choices: tuple[Any, ...]) -> StripeError:
    """Stripe's answer to a value outside a parameter's enum: it lists the values, naming the
    parameter (``Invalid tax_exempt: must be one of exempt, none, or reverse``)."""
    named = [str(c) for c in choices if c != ""] or ['""']
    head, last = ", ".join(named[:-1]), named[-1]
    listed = last if not head else f"{head} or {last}" if len(named) == 2 else f"{head}, or {last}"
    return invalid_request(f"Invalid {path}: must be one of {listed}", param=path)


def _union(members: tuple[Any, ...], value: Any, path: str, module: str) -> Any:
    evaluated = [_eval(m, module) for m in members]
    enum = tuple(
        v for m in evaluated if typing.get_origin(m) is Literal for v in typing.get_args(m)
    )
    if any(v != "" for v in enum):
        # The SDK types every enum as ``Literal[...] | str`` so that values a later API version
        # adds do not break older code; the specification's ``enum`` is the Literal, and Stripe
        # refuses anything else. (``Literal[''] | str`` is a plain string that "" unsets.)
        evaluated = [m for m in evaluated if m is not str]
    wanted = "dict" if isinstance(value, dict) else "list" if isinstance(value, list) else "scalar"
    candidates = [m for m in evaluated if _shape(m) == wanted]
    if not candidates:
        raise _Mismatch(invalid_request(f"Invalid value for {path}", param=path))
    # Literal members first: "" (unset) and "now" must not be read as a failed integer.
    candidates.sort(key=lambda m: typing.get_origin(m) is not Literal)
    last: _Mismatch | None = None
    for member in candidates:
        try:
            return _coerce(member, value, path, module)
        except _Mismatch as mismatch:
            if wanted != "scalar":
                raise
            last = mismatch
    if enum and all(typing.get_origin(m) is Literal for m in candidates):
        raise _Mismatch(_not_one_of(path, enum))
    assert last is not None
    raise last
