"""Which properties ``expand[]`` may name, as Stripe's specification says.

Stripe's OpenAPI document marks each object's expandable properties (``x-expandableFields``): the
ones that hold an id or the object it names (``customer``, ``latest_invoice``), the nested objects
an expansion path goes through (``phases``, ``parent``), and a few "includable" properties that are
left out of a response unless expanded (a customer's ``tax_ids``, ``subscriptions``). Expanding
anything else (``email``, ``metadata``) is refused with 400, and so is a path that goes through a
property that is not an object.

The SDK's resource classes are generated from that document: an expandable property is typed
``Union[str, Object]`` (``ExpandableField``), a nested one as an inner ``StripeObject`` class, so
the rules are read from them. Includable properties are not typed apart from optional ones, so
they are listed here from Stripe's API reference.
"""

from __future__ import annotations

import sys
import types
import typing
from dataclasses import dataclass
from functools import cache
from typing import Any, ForwardRef, Literal, Union

import stripe
from stripe._list_object import ListObject
from stripe._object_classes import get_object_class
from stripe._stripe_object import StripeObject

INCLUDABLE: dict[str, frozenset[str]] = {
    "customer": frozenset(
        {"cash_balance", "invoice_credit_balance", "sources", "subscriptions", "tax", "tax_ids"}
    ),
}


@dataclass(frozen=True)
class Property:
    """How an expansion path may treat one property of an object."""

    kind: Literal["expandable", "nested", "includable"]
    target: type | None  # the class the path continues in


def rule(object_type: str | None, cls: type | None, name: str) -> Property | None:
    """The expansion rule for property ``name`` of an object, or None: not expandable."""
    if object_type is not None and name in INCLUDABLE.get(object_type, frozenset()):
        return Property("includable", _class_of(object_type))
    if cls is None:
        return None
    return _properties(cls).get(name)


def class_of(object_type: str | None) -> type | None:
    return _class_of(object_type) if object_type else None


@cache
def _class_of(object_type: str) -> type | None:
    found = get_object_class("V1", object_type)
    return found if found is not StripeObject else None


@cache
def _properties(cls: type) -> dict[str, Property]:
    found: dict[str, Property] = {}
    for klass in reversed(cls.__mro__):
        for name, annotation in vars(klass).get("__annotations__", {}).items():
            prop = _classify(_resolve(annotation, klass))
            if prop is not None:
                found[name] = prop
    return found


def _resolve(annotation: Any, owner: type) -> Any:
    if isinstance(annotation, str):
        annotation = ForwardRef(annotation)
    if isinstance(annotation, ForwardRef):
        namespace = dict(vars(sys.modules[owner.__module__]))
        namespace.update(vars(owner))
        try:
            return eval(annotation.__forward_arg__, namespace)  # noqa: S307 - SDK type text
        except NameError:
            return annotation
    return annotation


def _classify(tp: Any) -> Property | None:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        members = [m for m in typing.get_args(tp) if m is not type(None)]
        targets = [_object_class(m) for m in members if m is not str]
        if str in members and any(t is not None for t in targets):
            return Property("expandable", next(t for t in targets if t is not None))
        if len(members) == 1:
            return _classify(members[0])
        return None
    if origin in (list, typing.List):  # noqa: UP006
        (item,) = typing.get_args(tp) or (Any,)
        return _classify(item)
    if isinstance(origin, type) and issubclass(origin, ListObject):
        # A list object: the path goes on through its ``data`` to the items' class.
        (item,) = typing.get_args(tp) or (Any,)
        return Property("nested", _object_class(item))
    target = _object_class(tp)
    if target is not None and issubclass(target, StripeObject):
        return Property("nested", target)
    return None


def _object_class(tp: Any) -> type | None:
    if isinstance(tp, ForwardRef):
        found = getattr(stripe, tp.__forward_arg__, None)
        return found if isinstance(found, type) else None
    return tp if isinstance(tp, type) else None
