"""The emulated Stripe account: resources, billing semantics, events.

Every public method runs under the state lock (the app holds it) and works on plain JSON-able
dicts in ``StateStore.data``, so a state file restores everything, idempotency keys included.
Time comes from an injectable clock; anything that Stripe does "later" (a schedule whose start
date arrives, a draft invoice auto-finalizing an hour after creation, a phase or period ending)
happens lazily in ``tick`` at the start of the next request once the clock has passed it.
"""

from __future__ import annotations

import copy
import math
import random
import re
import secrets
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import stripe

from qtc import tax_ids
from sandbox.common import StateStore
from sandbox.stripe import expansion, search, shapes, tax
from sandbox.stripe.billing import line_amount, period_containing, prorate, shift
from sandbox.stripe.errors import (
    card_declined,
    invalid_request,
    parameter_invalid,
    parameter_missing,
    resource_missing,
)

API_VERSION: str = stripe.api_version
MAX_PHASES = 10
MAX_ITEMS = 20
EMBEDDED_LINES = 10
_ALPHABET = string.ascii_letters + string.digits

# Longest prefix first: "sub_sched_" must win over "sub_".
PREFIXES: dict[str, str] = {
    "sub_sched_": "subscription_schedule",
    "cus_": "customer",
    "prod_": "product",
    "price_": "price",
    "sub_": "subscription",
    "in_": "invoice",
    "ii_": "invoiceitem",
    "evt_": "event",
    "txi_": "tax_id",
}
KINDS = (
    "customer",
    "tax_id",
    "product",
    "price",
    "subscription",
    "subscription_schedule",
    "invoice",
    "invoiceitem",
    "event",
)
_INTERVALS = ("day", "week", "month", "year")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_MIXED_PLANS = "Currency and interval fields must match across all plans on this subscription."
_MAX_INTERVAL_DAYS = {"day": 1, "week": 7, "month": 31, "year": 366}
# Stripe's test-mode payment methods, so card outcomes can be exercised without card data.
_DECLINING_PAYMENT_METHODS = {
    "pm_card_chargeDeclined": "generic_decline",
    "pm_card_chargeDeclinedInsufficientFunds": "insufficient_funds",
}


def initial_state() -> dict[str, Any]:
    return {
        "objects": {kind: {} for kind in KINDS},
        "idempotency": {},
        "stats": {"requests": 0, "idempotent_replays": 0},
    }


@dataclass
class Ctx:
    """Where a request came from: ids recorded on events, base URL for hosted invoice links."""

    request_id: str
    idempotency_key: str | None
    base_url: str


# Ids need to be unique, not unguessable: one seeded generator instead of a system call per
# character (24 per id, a few dozen ids per deal: 5 % of the emulators' CPU in a profile).
_ID_RANDOM = random.Random(secrets.randbits(128))


def _new_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(_ID_RANDOM.choices(_ALPHABET, k=length))


def _metadata(current: dict[str, str], update: Any, param: str = "metadata") -> dict[str, str]:
    """Apply Stripe's metadata update rules: ``""`` clears all, a key set to ``""`` is removed."""
    if update is None:
        return current
    if update == "":
        return {}
    result = dict(current)
    for key, value in update.items():
        if len(key) > 40:
            raise parameter_invalid(
                f"{param}[{key}]",
                "Metadata keys can have up to 40 characters.",
                "parameter_invalid_string",
            )
        if value == "":
            result.pop(key, None)
            continue
        if len(str(value)) > 500:
            raise parameter_invalid(
                f"{param}[{key}]",
                f"Metadata values can have up to 500 characters, but you passed in a value that "
                f"is {len(str(value))} characters.",
            )
        result[key] = str(value)
    if len(result) > 50:
        raise parameter_invalid(param, "You can have up to 50 metadata keys.")
    return result


def _decimal_amount(data: dict[str, Any], path: str) -> str:
    if data.get("unit_amount") is not None:
        amount = data["unit_amount"]
        if amount < 0:
            raise parameter_invalid(
                f"{path}[unit_amount]", "This value must be greater than or equal to 0."
            )
        return str(amount)
    if data.get("unit_amount_decimal") is not None:
        try:
            value = Decimal(str(data["unit_amount_decimal"]))
        except InvalidOperation:
            raise parameter_invalid(
                f"{path}[unit_amount_decimal]",
                f"Invalid decimal: {data['unit_amount_decimal']}",
                "parameter_invalid_decimal",
            ) from None
        if value < 0:
            raise parameter_invalid(
                f"{path}[unit_amount_decimal]", "This value must be greater than or equal to 0."
            )
        return format(value.normalize(), "f")
    raise parameter_missing(f"{path}[unit_amount]" if path else "unit_amount")


class StripeBackend:
    """One emulated Stripe account."""

    def __init__(self, store: StateStore, clock: Callable[[], float]) -> None:
        self.store = store
        self.clock = clock
        # The earliest time at which ``tick`` has anything to do, as of its last full pass; 0
        # forces a pass. Every mutating request resets it (``invalidate_tick``): the pass looks
        # at every schedule, subscription and invoice, which made each request cost O(objects).
        self._next_due: float = 0

    # --- plumbing ------------------------------------------------------------------------------

    @property
    def data(self) -> dict[str, Any]:
        return self.store.data

    def now(self) -> int:
        return int(self.clock())

    def objects(self, kind: str) -> dict[str, dict[str, Any]]:
        return self.data["objects"][kind]

    def get(
        self, kind: str, object_id: Any, param: str = "id", *, in_path: bool | None = None
    ) -> dict[str, Any]:
        obj = self.objects(kind).get(object_id) if isinstance(object_id, str) else None
        if obj is None:
            raise resource_missing(kind, str(object_id), param, in_path=in_path)
        return obj

    def find(self, object_id: str) -> dict[str, Any] | None:
        for prefix, kind in PREFIXES.items():
            if object_id.startswith(prefix):
                return self.objects(kind).get(object_id)
        # Products may carry custom ids without a prefix.
        return self.objects("product").get(object_id)

    def _emit(self, ctx: Ctx | None, type_: str, obj: dict[str, Any]) -> None:
        evt_id = _new_id("evt_")
        self.objects("event")[evt_id] = shapes.event(
            evt_id,
            self.now(),
            type_,
            self.render(obj, []),
            API_VERSION,
            ctx.request_id if ctx else None,
            ctx.idempotency_key if ctx else None,
        )

    def render(self, obj: dict[str, Any], expand: Iterable[str]) -> dict[str, Any]:
        """A copy of ``obj`` as the API returns it: lines trimmed, ``expand[]`` paths expanded."""
        out = _json_copy(obj)
        if out.get("object") == "invoice":
            # Kept for the emulator's own look-ups; since API version 2025-03-31 Stripe shows an
            # invoice's subscription only under ``parent.subscription_details``.
            out.pop("subscription", None)
            lines = out["lines"]["data"]
            out["lines"]["has_more"] = len(lines) > EMBEDDED_LINES
            out["lines"]["data"] = lines[:EMBEDDED_LINES]
        for path in expand:
            self._expand(out, None, path.split("."), 0, path)
        return out

    def _expand(self, node: Any, cls: type | None, parts: list[str], depth: int, full: str) -> None:
        """Expand ``parts`` in ``node`` (an object of SDK class ``cls``) as Stripe does: only
        properties its specification marks expandable, ids replaced by their objects, includable
        properties added."""
        if depth > 4:
            raise invalid_request(
                f"You cannot expand more than 4 levels of a property. Property: {full}",
                param="expand",
            )
        if isinstance(node, list):
            for element in node:
                self._expand(element, cls, parts, depth, full)
            return
        if not isinstance(node, dict) or not parts:
            return
        head, rest = parts[0], parts[1:]
        object_type = node.get("object") if isinstance(node.get("object"), str) else None
        if object_type == "list" and head == "data":
            self._expand(node["data"], cls, rest, depth, full)
            return
        cls = expansion.class_of(object_type) or cls
        prop = expansion.rule(object_type, cls, head)
        if prop is None:
            raise invalid_request(f"This property cannot be expanded ({full}).", param="expand")
        if prop.kind == "includable":
            node[head] = self._included(node, head)
        elif head not in node:
            raise invalid_request(f"This property cannot be expanded ({full}).", param="expand")
        value = node[head]
        if prop.kind == "expandable" and isinstance(value, str):
            target = self.find(value)
            if target is None:
                return
            node[head] = self.render(target, [])
            value = node[head]
        self._expand(value, prop.target, rest, depth + 1, full)

    def _included(self, customer: dict[str, Any], name: str) -> Any:
        """A customer property Stripe leaves out unless ``expand[]`` names it."""
        cid = customer["id"]
        if name == "tax_ids":
            items = [self.render(t, []) for t in reversed(self.customer_tax_ids(cid))]
            return shapes.list_object(items, f"/v1/customers/{cid}/tax_ids", False)
        if name == "subscriptions":
            subs = [s for s in self.objects("subscription").values() if s["customer"] == cid]
            items = [self.render(s, []) for s in reversed(subs)]
            return shapes.list_object(items, f"/v1/customers/{cid}/subscriptions", False)
        if name == "sources":
            return shapes.list_object([], f"/v1/customers/{cid}/sources", False)
        if name == "invoice_credit_balance":
            return {}
        if name == "cash_balance":
            return {
                "object": "cash_balance",
                "available": None,
                "customer": cid,
                "livemode": False,
                "settings": {"reconciliation_mode": "automatic", "using_merchant_default": True},
            }
        return {"automatic_tax": "not_collecting", "ip_address": None, "location": None}

    def list_response(
        self,
        items: list[dict[str, Any]],
        params: dict[str, Any],
        url: str,
        expand: list[str],
    ) -> dict[str, Any]:
        """Newest first, paginated with ``limit``, ``starting_after`` and ``ending_before``."""
        ordered = list(reversed(items))
        limit = params.get("limit", 10)
        if not 1 <= limit <= 100:
            raise parameter_invalid(
                "limit", "This value must be between 1 and 100.", "parameter_invalid_integer"
            )
        ids = [o["id"] for o in ordered]
        if params.get("starting_after"):
            cursor = params["starting_after"]
            if cursor not in ids:
                raise resource_missing("object", cursor, "starting_after")
            page = ordered[ids.index(cursor) + 1 :]
            chunk, more = page[:limit], len(page) > limit
        elif params.get("ending_before"):
            cursor = params["ending_before"]
            if cursor not in ids:
                raise resource_missing("object", cursor, "ending_before")
            page = ordered[: ids.index(cursor)]
            chunk, more = page[-limit:], len(page) > limit
        else:
            chunk, more = ordered[:limit], len(ordered) > limit
        item_expand = [p.removeprefix("data.") for p in expand if p.startswith("data.")]
        return shapes.list_object([self.render(o, item_expand) for o in chunk], url, more)

    def search_response(
        self,
        kind: str,
        params: dict[str, Any],
        fields: frozenset[str],
        url: str,
        expand: list[str],
    ) -> dict[str, Any]:
        predicate = search.parse(params.get("query", ""), fields)
        matches = [o for o in reversed(list(self.objects(kind).values())) if predicate(o)]
        limit = params.get("limit", 10)
        page = params.get("page") or "0"
        if not page.isdigit():
            raise parameter_invalid("page", f"Invalid page: {page}")
        start = int(page)
        chunk = matches[start : start + limit]
        more = len(matches) > start + limit
        item_expand = [p.removeprefix("data.") for p in expand if p.startswith("data.")]
        return {
            "object": "search_result",
            "data": [self.render(o, item_expand) for o in chunk],
            "has_more": more,
            "next_page": str(start + limit) if more else None,
            "url": url,
            "total_count": len(matches) if "total_count" in expand else None,
        }

    def stats(self) -> dict[str, Any]:
        return {
            "objects": {kind: len(self.objects(kind)) for kind in KINDS},
            "idempotency_keys": len(self.data["idempotency"]),
            **self.data["stats"],
        }

    # --- clock ---------------------------------------------------------------------------------

    def invalidate_tick(self) -> None:
        """State changed outside ``tick``: its next call makes a full pass."""
        self._next_due = 0

    def tick(self, ctx: Ctx) -> bool:
        """Do what Stripe would have done by now; True when anything changed.

        One pass over schedules, subscriptions and invoices, which also finds when the next one
        falls due; until then, and until a mutating request, later calls skip the pass.
        """
        now = self.now()
        if now < self._next_due:
            return False
        changed = False
        due: list[float] = [math.inf]
        for sched in list(self.objects("subscription_schedule").values()):
            if sched["status"] == "not_started" and sched["phases"][0]["start_date"] <= now:
                self._start_schedule(sched, ctx)
                changed = True
            due.append(_schedule_due(sched))
        for sub in list(self.objects("subscription").values()):
            changed = self._tick_subscription(sub, now, ctx) or changed
            due.append(_subscription_due(sub))
        for inv in list(self.objects("invoice").values()):
            at = inv["automatically_finalizes_at"]
            if inv["status"] == "draft" and inv["auto_advance"] and at is not None and at <= now:
                self._finalize(inv, ctx)
                if inv["collection_method"] == "send_invoice" and inv["status"] == "open":
                    self._emit(ctx, "invoice.sent", inv)
                changed = True
            due.append(_invoice_due(inv))
        # A change can move an object already passed (a subscription's renewal advances its
        # schedule's phase): then the due times are read again, after everything settled.
        self._next_due = self._earliest_due() if changed else min(due)
        return changed

    def _earliest_due(self) -> float:
        """When the next schedule starts, period or phase ends, or draft finalizes (inf: never)."""
        return min(
            [
                math.inf,
                *map(_schedule_due, self.objects("subscription_schedule").values()),
                *map(_subscription_due, self.objects("subscription").values()),
                *map(_invoice_due, self.objects("invoice").values()),
            ]
        )

    def _tick_subscription(self, sub: dict[str, Any], now: int, ctx: Ctx) -> bool:
        changed = False
        while sub["status"] in ("active", "incomplete", "past_due"):
            period_end = sub["items"]["data"][0]["current_period_end"]
            sched = self.objects("subscription_schedule").get(sub["schedule"] or "")
            phase_end = None
            if sched is not None and sched["status"] == "active" and sched["current_phase"]:
                phase_end = sched["current_phase"]["end_date"]
            boundary = min(t for t in (period_end, phase_end) if t is not None)
            if boundary > now:
                break
            changed = True
            if sched is not None and phase_end is not None and phase_end <= period_end:
                self._advance_phase(sched, sub, ctx)
                continue
            self._renew(sub, ctx)
        return changed

    # --- customers -----------------------------------------------------------------------------

    def create_customer(self, ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
        _check_email(p)
        cid = _new_id("cus_", 14)
        prefix = p.get("invoice_prefix") or secrets.token_hex(4).upper()
        cust = shapes.customer(cid, self.now(), p, prefix)
        cust["metadata"] = _metadata({}, p.get("metadata"))
        if p.get("shipping"):
            cust["shipping"] = {
                "address": shapes.address(p["shipping"].get("address")),
                "name": p["shipping"].get("name"),
                "phone": p["shipping"].get("phone"),
            }
        default_pm = (p.get("invoice_settings") or {}).get("default_payment_method") or p.get(
            "payment_method"
        )
        cust["invoice_settings"]["default_payment_method"] = default_pm
        tax_ids = [
            self._validate_tax_id(t, f"tax_id_data[{i}]")
            for i, t in enumerate(p.get("tax_id_data") or [])
        ]
        self.objects("customer")[cid] = cust
        self._emit(ctx, "customer.created", cust)
        for type_, value in tax_ids:
            self._add_tax_id(ctx, cust, type_, value)
        return cust

    def _validate_tax_id(self, data: dict[str, Any], path: str) -> tuple[str, str]:
        """Stripe checks every value against its type's format (the type itself is an enum the
        parameter check has already enforced)."""
        type_, value = data["type"], data["value"]
        if not tax_ids.value_is_valid(type_, value):
            raise parameter_invalid(
                f"{path}[value]" if path else "value",
                f"Invalid value for {type_}.",
                "tax_id_invalid",
            )
        return type_, value

    def _add_tax_id(self, ctx: Ctx, cust: dict[str, Any], type_: str, value: str) -> dict[str, Any]:
        tid = _new_id("txi_")
        country = tax_ids.country_of_value(type_, value)
        obj = shapes.tax_id(tid, self.now(), cust["id"], type_, value, country)
        obj["verification"]["status"] = tax.verification_status(type_, value)
        self.objects("tax_id")[tid] = obj
        self._emit(ctx, "customer.tax_id.created", obj)
        return obj

    def create_tax_id(self, ctx: Ctx, p: dict[str, Any], customer_id: str) -> dict[str, Any]:
        cust = self.get("customer", customer_id)
        type_, value = self._validate_tax_id(p, "")
        return self._add_tax_id(ctx, cust, type_, value)

    def customer_tax_ids(self, customer_id: str) -> list[dict[str, Any]]:
        return [t for t in self.objects("tax_id").values() if t["customer"] == customer_id]

    def update_customer(self, ctx: Ctx, p: dict[str, Any], customer_id: str) -> dict[str, Any]:
        cust = self.get("customer", customer_id)
        _check_email(p)
        for key in ("email", "name", "phone", "description"):
            if key in p:
                cust[key] = p[key] or None
        if "address" in p:
            cust["address"] = shapes.address(p["address"])
        if "invoice_settings" in p and "default_payment_method" in p["invoice_settings"]:
            cust["invoice_settings"]["default_payment_method"] = (
                p["invoice_settings"]["default_payment_method"] or None
            )
        cust["metadata"] = _metadata(cust["metadata"], p.get("metadata"))
        self._emit(ctx, "customer.updated", cust)
        return cust

    def delete_customer(self, ctx: Ctx, customer_id: str) -> dict[str, Any]:
        cust = self.get("customer", customer_id)
        del self.objects("customer")[customer_id]
        self._emit(ctx, "customer.deleted", cust)
        return {"id": customer_id, "object": "customer", "deleted": True}

    def list_customers(self, p: dict[str, Any], expand: list[str]) -> dict[str, Any]:
        items = [
            c
            for c in self.objects("customer").values()
            if "email" not in p or c["email"] == p["email"]
        ]
        return self.list_response(items, p, "/v1/customers", expand)

    # --- products and prices -------------------------------------------------------------------

    def create_product(self, ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
        if not p.get("name"):
            raise parameter_missing("name")
        pid = p.get("id") or _new_id("prod_", 14)
        if pid in self.objects("product"):
            raise invalid_request(
                "Product already exists.", param="id", code="resource_already_exists"
            )
        prod = shapes.product(pid, self.now(), p)
        prod["metadata"] = _metadata({}, p.get("metadata"))
        self.objects("product")[pid] = prod
        self._emit(ctx, "product.created", prod)
        if p.get("default_price_data"):
            data = dict(p["default_price_data"])
            data["product"] = pid
            price = self._new_price(ctx, data, "default_price_data", active=True)
            prod["default_price"] = price["id"]
        return prod

    def update_product(self, ctx: Ctx, p: dict[str, Any], product_id: str) -> dict[str, Any]:
        prod = self.get("product", product_id)
        for key in ("name", "description", "active", "unit_label", "url"):
            if key in p:
                prod[key] = p[key] if p[key] != "" else None
        if p.get("default_price"):
            self.get("price", p["default_price"], "default_price")
            prod["default_price"] = p["default_price"]
        prod["metadata"] = _metadata(prod["metadata"], p.get("metadata"))
        prod["updated"] = self.now()
        self._emit(ctx, "product.updated", prod)
        return prod

    def list_products(self, p: dict[str, Any], expand: list[str]) -> dict[str, Any]:
        def keep(prod: dict[str, Any]) -> bool:
            if "active" in p and prod["active"] != p["active"]:
                return False
            return not p.get("ids") or prod["id"] in p["ids"]

        items = [o for o in self.objects("product").values() if keep(o)]
        return self.list_response(items, p, "/v1/products", expand)

    def create_price(self, ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
        data = dict(p)
        if p.get("product_data"):
            prod = self.create_product(ctx, {**p["product_data"]})
            data["product"] = prod["id"]
        return self._new_price(ctx, data, "", active=p.get("active", True))

    def _new_price(
        self, ctx: Ctx, data: dict[str, Any], path: str, *, active: bool
    ) -> dict[str, Any]:
        def name(key: str) -> str:
            return f"{path}[{key}]" if path else key

        if not data.get("currency"):
            raise parameter_missing(name("currency"))
        if not data.get("product"):
            raise parameter_missing(name("product"))
        self.get("product", data["product"], name("product"))
        recurring = data.get("recurring")
        if recurring:
            interval = recurring.get("interval")
            if interval not in _INTERVALS:
                raise parameter_invalid(
                    name("recurring][interval").replace("]]", "]"),
                    "Invalid recurring[interval]: must be one of day, month, week, or year",
                )
            count = recurring.get("interval_count", 1)
            if count < 1 or count * _MAX_INTERVAL_DAYS[interval] > 3 * 366:
                raise parameter_invalid(
                    name("recurring") + "[interval_count]",
                    "The maximum billing interval is three years (or 156 weeks, or 1095 days).",
                )
        lookup_key = data.get("lookup_key") or None
        if lookup_key:
            holder = next(
                (x for x in self.objects("price").values() if x["lookup_key"] == lookup_key), None
            )
            if holder is not None:
                if not data.get("transfer_lookup_key"):
                    raise invalid_request(
                        f"A price ({holder['id']}) already uses that lookup key.",
                        param=name("lookup_key"),
                    )
                holder["lookup_key"] = None
        price = shapes.price(
            _new_id("price_"),
            self.now(),
            product_id=data["product"],
            currency=data["currency"].lower(),
            unit_amount_decimal=_decimal_amount(data, path),
            recurring=recurring or None,
            active=active,
            lookup_key=lookup_key,
            nickname=data.get("nickname") or None,
            tax_behavior=data.get("tax_behavior") or "unspecified",
        )
        price["metadata"] = _metadata({}, data.get("metadata"))
        self.objects("price")[price["id"]] = price
        self._emit(ctx, "price.created", price)
        return price

    def update_price(self, ctx: Ctx, p: dict[str, Any], price_id: str) -> dict[str, Any]:
        price = self.get("price", price_id)
        if "active" in p:
            price["active"] = p["active"]
        if "nickname" in p:
            price["nickname"] = p["nickname"] or None
        if "lookup_key" in p:
            price["lookup_key"] = p["lookup_key"] or None
        price["metadata"] = _metadata(price["metadata"], p.get("metadata"))
        self._emit(ctx, "price.updated", price)
        return price

    def list_prices(self, p: dict[str, Any], expand: list[str]) -> dict[str, Any]:
        def keep(price: dict[str, Any]) -> bool:
            checks = [
                not p.get("lookup_keys") or price["lookup_key"] in p["lookup_keys"],
                "product" not in p or price["product"] == p["product"],
                "active" not in p or price["active"] == p["active"],
                "type" not in p or price["type"] == p["type"],
                "currency" not in p or price["currency"] == p["currency"],
            ]
            return all(checks)

        items = [o for o in self.objects("price").values() if keep(o)]
        return self.list_response(items, p, "/v1/prices", expand)

    def _item_price(
        self, ctx: Ctx, item: dict[str, Any], path: str, *, recurring: bool
    ) -> dict[str, Any]:
        """The price of a subscription/phase item or invoice item (``price`` or ``price_data``)."""
        price_id = item.get("price") or item.get("plan")
        if price_id:
            price = self.get("price", price_id, f"{path}[price]")
        elif item.get("price_data"):
            data = item["price_data"]
            if recurring and not data.get("recurring"):
                raise parameter_missing(f"{path}[price_data][recurring]")
            price = self._new_price(ctx, data, f"{path}[price_data]", active=False)
        else:
            raise parameter_missing(f"{path}[price]")
        if recurring and price["type"] != "recurring":
            raise invalid_request(
                "The price specified is set to `type=one_time` but this field only accepts prices "
                "with `type=recurring`.",
                param=f"{path}[price]",
            )
        if not recurring and price["type"] != "one_time":
            raise invalid_request(
                "The price specified is set to `type=recurring` but this field only accepts "
                "prices with `type=one_time`.",
                param=f"{path}[price]",
            )
        return price

    def _resolve_items(
        self, ctx: Ctx, items: list[dict[str, Any]], path: str
    ) -> list[tuple[dict[str, Any], int, dict[str, str]]]:
        if not items:
            raise parameter_missing(path)
        if len(items) > MAX_ITEMS:
            raise parameter_invalid(path, f"You can have at most {MAX_ITEMS} items.")
        resolved = []
        for i, item in enumerate(items):
            price = self._item_price(ctx, item, f"{path}[{i}]", recurring=True)
            quantity = item.get("quantity", 1)
            if quantity < 0:
                raise parameter_invalid(
                    f"{path}[{i}][quantity]", "This value must be greater than or equal to 0."
                )
            resolved.append((price, quantity, _metadata({}, item.get("metadata"))))
        first = resolved[0][0]
        for i, (price, _, _) in enumerate(resolved):
            if price["currency"] != first["currency"]:
                raise invalid_request(
                    _MIXED_PLANS,
                    param=f"{path}[{i}][price]",
                )
            if (price["recurring"]["interval"], price["recurring"]["interval_count"]) != (
                first["recurring"]["interval"],
                first["recurring"]["interval_count"],
            ):
                raise invalid_request(
                    _MIXED_PLANS,
                    param=f"{path}[{i}][price]",
                )
        return resolved

    def _resolve_add_invoice_items(
        self, ctx: Ctx, items: list[dict[str, Any]] | None, path: str
    ) -> list[tuple[dict[str, Any], int, dict[str, str]]]:
        resolved = []
        for i, item in enumerate(items or []):
            price = self._item_price(ctx, item, f"{path}[{i}]", recurring=False)
            resolved.append((price, item.get("quantity", 1), _metadata({}, item.get("metadata"))))
        if len(resolved) > MAX_ITEMS:
            raise parameter_invalid(path, f"You can have at most {MAX_ITEMS} items.")
        return resolved

    # --- subscriptions -------------------------------------------------------------------------

    def create_subscription(self, ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
        if not p.get("customer"):
            raise parameter_missing("customer")
        cust = self.get("customer", p["customer"], "customer")
        items = self._resolve_items(ctx, p.get("items") or [], "items")
        currency = items[0][0]["currency"]
        if p.get("currency") and p["currency"].lower() != currency:
            raise invalid_request(
                "The currency of the subscription must match the prices' currency.",
                param="currency",
            )
        adds = self._resolve_add_invoice_items(ctx, p.get("add_invoice_items"), "add_invoice_items")
        collection_method, days = self._collection(
            p.get("collection_method"), p.get("days_until_due"), ""
        )
        now = self.now()
        start = p.get("backdate_start_date", now)
        if start > now:
            raise parameter_invalid(
                "backdate_start_date", "backdate_start_date must be in the past."
            )
        recurring = items[0][0]["recurring"]
        anchor = p.get("billing_cycle_anchor", start)
        natural = shift(start, recurring["interval"], recurring["interval_count"])
        if anchor < start:
            raise parameter_invalid(
                "billing_cycle_anchor",
                "billing_cycle_anchor cannot be earlier than the start date.",
            )
        if anchor > natural:
            raise parameter_invalid(
                "billing_cycle_anchor",
                f"billing_cycle_anchor cannot be later than next natural billing date ({natural}) "
                "for plan",
            )
        return self._start_subscription(
            ctx,
            cust,
            items,
            adds,
            start=start,
            anchor=anchor,
            collection_method=collection_method,
            days_until_due=days,
            metadata=_metadata({}, p.get("metadata")),
            description=p.get("description") or None,
            proration_behavior=p.get("proration_behavior", "create_prorations"),
            payment_behavior=p.get("payment_behavior", "allow_incomplete"),
            schedule_id=None,
            automatic_tax=self._automatic_tax(
                cust, p.get("automatic_tax"), "automatic_tax[enabled]"
            ),
        )

    def _collection(
        self, method: str | None, days: int | None, path: str
    ) -> tuple[str, int | None]:
        method = method or "charge_automatically"
        if method == "send_invoice":
            if days is None:
                raise parameter_missing(f"{path}days_until_due")
            if days < 0:
                raise parameter_invalid(f"{path}days_until_due", "days_until_due must be >= 0.")
        elif days is not None:
            raise parameter_invalid(
                f"{path}days_until_due",
                "You can only set `days_until_due` if `collection_method` is `send_invoice`.",
            )
        return method, days

    def _start_subscription(
        self,
        ctx: Ctx,
        cust: dict[str, Any],
        items: list[tuple[dict[str, Any], int, dict[str, str]]],
        adds: list[tuple[dict[str, Any], int, dict[str, str]]],
        *,
        start: int,
        anchor: int,
        collection_method: str,
        days_until_due: int | None,
        metadata: dict[str, str],
        description: str | None,
        proration_behavior: str,
        payment_behavior: str,
        schedule_id: str | None,
        automatic_tax: bool = False,
    ) -> dict[str, Any]:
        pm = cust["invoice_settings"]["default_payment_method"]
        if (
            collection_method == "charge_automatically"
            and not pm
            and payment_behavior != "default_incomplete"
        ):
            raise invalid_request(
                "This customer has no attached payment source or default payment method. Please "
                "consider adding a default payment method.",
                code="resource_missing",
            )
        sub_id = _new_id("sub_")
        recurring = items[0][0]["recurring"]
        interval, count = recurring["interval"], recurring["interval_count"]
        stub = anchor > start
        period = (start, anchor) if stub else (anchor, shift(anchor, interval, count))
        now = self.now()
        sub_items = [
            shapes.subscription_item(_new_id("si_", 14), now, sub_id, price, qty, meta, period)
            for price, qty, meta in items
        ]
        sub = shapes.subscription(
            sub_id,
            now,
            customer_id=cust["id"],
            currency=items[0][0]["currency"],
            start=start,
            anchor=anchor,
            collection_method=collection_method,
            days_until_due=days_until_due,
            items=sub_items,
            metadata=metadata,
            description=description,
            schedule_id=schedule_id,
            status="active",
        )
        if automatic_tax:
            sub["automatic_tax"] = {
                "enabled": True,
                "liability": {"type": "self", "account": None},
                "disabled_reason": None,
            }
        self.objects("subscription")[sub_id] = sub
        cust["currency"] = cust["currency"] or sub["currency"]
        inv = self._new_invoice(
            ctx, cust, sub, billing_reason="subscription_create", period=(start, start)
        )
        for price, qty, meta in adds:
            self._new_invoice_item(
                ctx,
                cust,
                price=price,
                quantity=qty,
                amount=None,
                currency=price["currency"],
                description=None,
                metadata=meta,
                period=period,
                subscription_id=sub_id,
                invoice=inv,
            )
        self._pull_pending_items(ctx, cust, inv, sub_id)
        for item in sub_items:
            price = item["price"]
            full = line_amount(price["unit_amount_decimal"], item["quantity"])
            name = self.objects("product")[price["product"]]["name"]
            if not stub:
                self._add_subscription_line(
                    inv,
                    item,
                    full,
                    period,
                    shapes.recurring_description(item["quantity"], name, price),
                    False,
                )
            elif proration_behavior == "create_prorations":
                whole = anchor - shift(anchor, interval, -count)
                self._add_subscription_line(
                    inv,
                    item,
                    prorate(full, anchor - start, whole),
                    period,
                    f"Remaining time on {item['quantity']}{shapes.TIMES}{name} after {start}",
                    True,
                )
        self._recompute(inv)
        sub["latest_invoice"] = inv["id"]
        self._emit(ctx, "invoice.created", inv)
        if collection_method == "charge_automatically":
            self._finalize(inv, ctx)
            if pm and inv["status"] == "open":
                self._charge(inv, pm, ctx, raise_on_decline=False)
            if inv["status"] != "paid":
                sub["status"] = "incomplete"
        self._emit(ctx, "customer.subscription.created", sub)
        self._tick_subscription(sub, self.now(), ctx)
        return sub

    def _renew(self, sub: dict[str, Any], ctx: Ctx) -> None:
        """Start the next billing period and invoice it in advance (``subscription_cycle``)."""
        first = sub["items"]["data"][0]
        recurring = first["price"]["recurring"]
        old = (first["current_period_start"], first["current_period_end"])
        period = period_containing(
            sub["billing_cycle_anchor"], recurring["interval"], recurring["interval_count"], old[1]
        )
        for item in sub["items"]["data"]:
            item["current_period_start"], item["current_period_end"] = period
        cust = self.objects("customer")[sub["customer"]]
        inv = self._new_invoice(ctx, cust, sub, billing_reason="subscription_cycle", period=old)
        self._pull_pending_items(ctx, cust, inv, sub["id"])
        for item in sub["items"]["data"]:
            price = item["price"]
            name = self.objects("product")[price["product"]]["name"]
            self._add_subscription_line(
                inv,
                item,
                line_amount(price["unit_amount_decimal"], item["quantity"]),
                period,
                shapes.recurring_description(item["quantity"], name, price),
                False,
            )
        self._recompute(inv)
        sub["latest_invoice"] = inv["id"]
        self._emit(ctx, "invoice.created", inv)
        self._emit(ctx, "customer.subscription.updated", sub)

    def update_subscription(self, ctx: Ctx, p: dict[str, Any], sub_id: str) -> dict[str, Any]:
        sub = self.get("subscription", sub_id)
        sub["metadata"] = _metadata(sub["metadata"], p.get("metadata"))
        if "description" in p:
            sub["description"] = p["description"] or None
        if "days_until_due" in p:
            _, sub["days_until_due"] = self._collection(
                sub["collection_method"], p["days_until_due"], ""
            )
        if "cancel_at_period_end" in p:
            sub["cancel_at_period_end"] = p["cancel_at_period_end"]
            sub["cancel_at"] = (
                sub["items"]["data"][0]["current_period_end"] if p["cancel_at_period_end"] else None
            )
        unsupported = sorted(set(p) & {"items", "billing_cycle_anchor", "add_invoice_items"})
        if unsupported:
            raise invalid_request(
                f"The sandbox does not emulate changing {unsupported[0]} on an existing "
                "subscription.",
                param=unsupported[0],
            )
        self._emit(ctx, "customer.subscription.updated", sub)
        return sub

    def cancel_subscription(self, ctx: Ctx, sub_id: str) -> dict[str, Any]:
        sub = self.get("subscription", sub_id)
        if sub["status"] == "canceled":
            raise invalid_request(
                f"A canceled subscription can only update its cancellation_details and metadata. "
                f"({sub_id})",
                code="resource_missing",
            )
        now = self.now()
        sub.update(status="canceled", canceled_at=now, ended_at=now)
        sub["cancellation_details"]["reason"] = "cancellation_requested"
        self._emit(ctx, "customer.subscription.deleted", sub)
        return sub

    def list_subscriptions(self, p: dict[str, Any], expand: list[str]) -> dict[str, Any]:
        status = p.get("status")

        def keep(sub: dict[str, Any]) -> bool:
            if "customer" in p and sub["customer"] != p["customer"]:
                return False
            if "price" in p and all(i["price"]["id"] != p["price"] for i in sub["items"]["data"]):
                return False
            if status in (None, "all"):
                return status == "all" or sub["status"] != "canceled"
            return bool(sub["status"] == status)

        items = [s for s in self.objects("subscription").values() if keep(s)]
        return self.list_response(items, p, "/v1/subscriptions", expand)

    def subscription_item(self, si_id: str) -> dict[str, Any]:
        for sub in self.objects("subscription").values():
            for item in sub["items"]["data"]:
                if item["id"] == si_id:
                    return item
        raise resource_missing("subscription_item", si_id)

    def list_subscription_items(self, p: dict[str, Any], expand: list[str]) -> dict[str, Any]:
        if not p.get("subscription"):
            raise parameter_missing("subscription")
        sub = self.get("subscription", p["subscription"], "subscription")
        return self.list_response(
            list(reversed(sub["items"]["data"])), p, "/v1/subscription_items", expand
        )

    # --- subscription schedules ----------------------------------------------------------------

    def create_schedule(self, ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("from_subscription"):
            raise invalid_request(
                "The sandbox does not emulate from_subscription; create the schedule with phases.",
                param="from_subscription",
            )
        if not p.get("customer"):
            raise parameter_missing("customer")
        cust = self.get("customer", p["customer"], "customer")
        phases_in = p.get("phases") or []
        if not phases_in:
            raise parameter_missing("phases")
        if len(phases_in) > MAX_PHASES:
            raise parameter_invalid(
                "phases", f"A subscription schedule can have at most {MAX_PHASES} phases."
            )
        now = self.now()
        start_param = p.get("start_date", "now")
        start = now if start_param == "now" else int(start_param)
        defaults = p.get("default_settings") or {}
        default_days = (defaults.get("invoice_settings") or {}).get("days_until_due")
        default_method = defaults.get("collection_method")
        if default_method:
            self._collection(default_method, default_days, "default_settings[invoice_settings][")
        phases = self._build_phases(ctx, phases_in, start, default_method, default_days)
        automatic_tax = self._automatic_tax(
            cust, defaults.get("automatic_tax"), "default_settings[automatic_tax][enabled]"
        ) or any(
            self._automatic_tax(cust, ph.get("automatic_tax"), f"phases[{i}][automatic_tax]")
            for i, ph in enumerate(phases_in)
        )
        sched = shapes.schedule(
            _new_id("sub_sched_"),
            now,
            customer_id=cust["id"],
            default_settings=shapes.schedule_default_settings(
                default_method, default_days, defaults.get("billing_cycle_anchor", "automatic")
            ),
            end_behavior=p.get("end_behavior", "release"),
            metadata=_metadata({}, p.get("metadata")),
            phases=phases,
        )
        if automatic_tax:
            sched["default_settings"]["automatic_tax"] = {
                "enabled": True,
                "liability": {"type": "self", "account": None},
                "disabled_reason": None,
            }
        self.objects("subscription_schedule")[sched["id"]] = sched
        self._emit(ctx, "subscription_schedule.created", sched)
        if start <= now:
            self._start_schedule(sched, ctx)
        return sched

    def _build_phases(
        self,
        ctx: Ctx,
        phases_in: list[dict[str, Any]],
        start: int,
        default_method: str | None,
        default_days: int | None,
    ) -> list[dict[str, Any]]:
        """Phases as given, each starting where the previous one ends, validated as Stripe does."""
        phases: list[dict[str, Any]] = []
        phase_start = start
        for i, ph in enumerate(phases_in):
            path = f"phases[{i}]"
            items = self._resolve_items(ctx, ph.get("items") or [], f"{path}[items]")
            adds = self._resolve_add_invoice_items(
                ctx, ph.get("add_invoice_items"), f"{path}[add_invoice_items]"
            )
            recurring = items[0][0]["recurring"]
            phase_end = self._phase_end(
                ph, path, phase_start, recurring, last=i == len(phases_in) - 1
            )
            days = (ph.get("invoice_settings") or {}).get("days_until_due")
            method = ph.get("collection_method")
            self._collection(
                method or default_method,
                days if days is not None else default_days,
                f"{path}[invoice_settings][",
            )
            phases.append(
                shapes.phase(
                    start=phase_start,
                    end=phase_end,
                    currency=items[0][0]["currency"],
                    items=[shapes.phase_item(price, qty, meta) for price, qty, meta in items],
                    add_invoice_items=[
                        shapes.phase_add_invoice_item(price["id"], qty, meta)
                        for price, qty, meta in adds
                    ],
                    metadata=_metadata({}, ph.get("metadata"), f"{path}[metadata]"),
                    collection_method=method,
                    days_until_due=days,
                    proration_behavior=ph.get("proration_behavior", "create_prorations"),
                    description=ph.get("description") or None,
                    billing_cycle_anchor=ph.get("billing_cycle_anchor"),
                )
            )
            phase_start = phase_end
        return phases

    def _phase_end(
        self, ph: dict[str, Any], path: str, start: int, recurring: dict[str, Any], *, last: bool
    ) -> int:
        given = [k for k in ("end_date", "iterations", "duration") if k in ph]
        if len(given) > 1:
            raise invalid_request(
                f"You may only specify one of these parameters: {', '.join(given)}.",
                param=f"{path}[{given[1]}]",
            )
        if "end_date" in ph:
            end = int(ph["end_date"])
            if end <= start:
                raise parameter_invalid(
                    f"{path}[end_date]", "The phase end_date must be after its start date."
                )
            return end
        if "duration" in ph:
            duration = ph["duration"]
            return shift(start, duration["interval"], duration.get("interval_count", 1))
        if "iterations" in ph:
            iterations = ph["iterations"]
            if iterations < 1:
                raise parameter_invalid(f"{path}[iterations]", "iterations must be at least 1.")
            return shift(start, recurring["interval"], recurring["interval_count"] * iterations)
        if not last:
            raise parameter_missing(f"{path}[end_date]")
        return shift(start, recurring["interval"], recurring["interval_count"])

    def _phase_settings(self, sched: dict[str, Any], ph: dict[str, Any]) -> tuple[str, int | None]:
        defaults = sched["default_settings"]
        method = ph["collection_method"] or defaults["collection_method"]
        days = (ph["invoice_settings"] or {}).get("days_until_due")
        if days is None:
            days = defaults["invoice_settings"]["days_until_due"]
        return method, days if method == "send_invoice" else None

    def _phase_items(self, ph: dict[str, Any]) -> list[tuple[dict[str, Any], int, dict[str, str]]]:
        return [
            (self.objects("price")[i["price"]], i["quantity"], i["metadata"]) for i in ph["items"]
        ]

    def _start_schedule(self, sched: dict[str, Any], ctx: Ctx) -> None:
        first = sched["phases"][0]
        cust = self.objects("customer")[sched["customer"]]
        method, days = self._phase_settings(sched, first)
        adds = [
            (self.objects("price")[a["price"]], a["quantity"], a["metadata"])
            for a in first["add_invoice_items"]
        ]
        sched["status"] = "active"
        sched["current_phase"] = {"start_date": first["start_date"], "end_date": first["end_date"]}
        sub = self._start_subscription(
            ctx,
            cust,
            self._phase_items(first),
            adds,
            start=first["start_date"],
            anchor=first["start_date"],
            collection_method=method,
            days_until_due=days,
            metadata=first["metadata"],
            description=first["description"],
            proration_behavior=first["proration_behavior"],
            payment_behavior="allow_incomplete",
            schedule_id=sched["id"],
            automatic_tax=sched["default_settings"]["automatic_tax"]["enabled"],
        )
        sched["subscription"] = sub["id"]
        self._emit(ctx, "subscription_schedule.updated", sched)

    def _advance_phase(self, sched: dict[str, Any], sub: dict[str, Any], ctx: Ctx) -> None:
        """Move from the current phase to the next (or end the schedule after the last one)."""
        ended_at = sched["current_phase"]["end_date"]
        following = [ph for ph in sched["phases"] if ph["start_date"] == ended_at]
        if not following:
            sched["current_phase"] = None
            if sched["end_behavior"] == "cancel":
                sched.update(status="completed", completed_at=ended_at)
                sub.update(status="canceled", canceled_at=ended_at, ended_at=ended_at)
                self._emit(ctx, "customer.subscription.deleted", sub)
            else:
                sched.update(
                    status="released", released_at=ended_at, released_subscription=sub["id"]
                )
                sub["schedule"] = None
                self._emit(ctx, "subscription_schedule.released", sched)
            self._emit(
                ctx,
                "subscription_schedule.completed"
                if sched["status"] == "completed"
                else "subscription_schedule.updated",
                sched,
            )
            return
        ph = following[0]
        sched["current_phase"] = {"start_date": ph["start_date"], "end_date": ph["end_date"]}
        first = sub["items"]["data"][0]
        period = (first["current_period_start"], first["current_period_end"])
        sub["items"]["data"] = [
            shapes.subscription_item(
                _new_id("si_", 14), ended_at, sub["id"], price, qty, meta, period
            )
            for price, qty, meta in self._phase_items(ph)
        ]
        sub["collection_method"], sub["days_until_due"] = self._phase_settings(sched, ph)
        if ph["metadata"]:
            sub["metadata"] = dict(ph["metadata"])
        cust = self.objects("customer")[sub["customer"]]
        for a in ph["add_invoice_items"]:
            price = self.objects("price")[a["price"]]
            self._new_invoice_item(
                ctx,
                cust,
                price=price,
                quantity=a["quantity"],
                amount=None,
                currency=price["currency"],
                description=None,
                metadata=a["metadata"],
                period=(ph["start_date"], ph["start_date"]),
                subscription_id=sub["id"],
                invoice=None,
            )
        self._emit(ctx, "subscription_schedule.updated", sched)
        self._emit(ctx, "customer.subscription.updated", sub)

    def update_schedule(self, ctx: Ctx, p: dict[str, Any], sched_id: str) -> dict[str, Any]:
        sched = self.get("subscription_schedule", sched_id)
        if sched["status"] not in ("not_started", "active"):
            raise invalid_request(
                f"You cannot update a subscription schedule that is {sched['status']}.", param="id"
            )
        if "default_settings" in p:
            raise invalid_request(
                "The sandbox does not emulate changing default_settings of an existing "
                "schedule; release it and create a new one.",
                param="default_settings",
            )
        if "phases" in p:
            self._replace_phases(ctx, sched, p["phases"] or [])
        sched["metadata"] = _metadata(sched["metadata"], p.get("metadata"))
        if "end_behavior" in p:
            sched["end_behavior"] = p["end_behavior"]
        self._emit(ctx, "subscription_schedule.updated", sched)
        return sched

    def _replace_phases(
        self, ctx: Ctx, sched: dict[str, Any], phases_in: list[dict[str, Any]]
    ) -> None:
        """``phases`` on update: the current phase (if the schedule has started) and every later
        one, replacing what was there; past phases are kept. As on Stripe, the first phase given
        must start when the current phase did, and items of the current phase take effect at
        once, without proration here (the callers in this project pass ``none``)."""
        if not phases_in:
            raise parameter_missing("phases")
        if len(phases_in) > MAX_PHASES:
            raise parameter_invalid(
                "phases", f"A subscription schedule can have at most {MAX_PHASES} phases."
            )
        given = phases_in[0].get("start_date")
        if given is None:
            raise parameter_missing("phases[0][start_date]")
        now = self.now()
        start = now if given == "now" else int(given)
        current = sched["current_phase"]
        if sched["status"] == "active" and current and start != current["start_date"]:
            raise invalid_request(
                "You can not modify the start date of the current phase.",
                param="phases[0][start_date]",
            )
        defaults = sched["default_settings"]
        phases = self._build_phases(
            ctx,
            phases_in,
            start,
            defaults["collection_method"],
            defaults["invoice_settings"]["days_until_due"],
        )
        sched["phases"] = [ph for ph in sched["phases"] if ph["end_date"] <= start] + phases
        if sched["status"] == "active" and current:
            sub = self.objects("subscription")[sched["subscription"]]
            first = phases[0]
            current["end_date"] = first["end_date"]
            period_item = sub["items"]["data"][0]
            period = (period_item["current_period_start"], period_item["current_period_end"])
            sub["items"]["data"] = [
                shapes.subscription_item(
                    _new_id("si_", 14), now, sub["id"], price, qty, meta, period
                )
                for price, qty, meta in self._phase_items(first)
            ]
            self._emit(ctx, "customer.subscription.updated", sub)
        elif sched["status"] == "not_started" and start <= now:
            self._start_schedule(sched, ctx)
        self.invalidate_tick()

    def release_schedule(self, ctx: Ctx, sched_id: str) -> dict[str, Any]:
        sched = self.get("subscription_schedule", sched_id)
        if sched["status"] not in ("not_started", "active"):
            raise invalid_request(
                f"You cannot release a subscription schedule that is currently in the "
                f"`{sched['status']}` status.",
            )
        sched.update(
            status="released",
            released_at=self.now(),
            released_subscription=sched["subscription"],
            current_phase=None,
        )
        if sched["subscription"]:
            self.objects("subscription")[sched["subscription"]]["schedule"] = None
        self._emit(ctx, "subscription_schedule.released", sched)
        return sched

    def cancel_schedule(self, ctx: Ctx, sched_id: str) -> dict[str, Any]:
        sched = self.get("subscription_schedule", sched_id)
        if sched["status"] not in ("not_started", "active"):
            raise invalid_request(
                f"You cannot cancel a subscription schedule that is currently in the "
                f"`{sched['status']}` status.",
            )
        sched.update(status="canceled", canceled_at=self.now(), current_phase=None)
        if sched["subscription"]:
            sub = self.objects("subscription")[sched["subscription"]]
            if sub["status"] != "canceled":
                self.cancel_subscription(ctx, sub["id"])
        self._emit(ctx, "subscription_schedule.canceled", sched)
        return sched

    def list_schedules(self, p: dict[str, Any], expand: list[str]) -> dict[str, Any]:
        items = [
            s
            for s in self.objects("subscription_schedule").values()
            if "customer" not in p or s["customer"] == p["customer"]
        ]
        return self.list_response(items, p, "/v1/subscription_schedules", expand)

    # --- invoices ------------------------------------------------------------------------------

    def _new_invoice(
        self,
        ctx: Ctx,
        cust: dict[str, Any],
        sub: dict[str, Any] | None,
        *,
        billing_reason: str,
        period: tuple[int, int],
        collection_method: str | None = None,
        days_until_due: int | None = None,
        auto_advance: bool = True,
        currency: str | None = None,
        metadata: dict[str, str] | None = None,
        description: str | None = None,
    ) -> dict[str, Any]:
        inv_id = _new_id("in_")
        inv = shapes.invoice(
            inv_id,
            self.now(),
            customer_obj=cust,
            customer_tax_ids=[
                {"type": t["type"], "value": t["value"]} for t in self.customer_tax_ids(cust["id"])
            ],
            currency=(sub or {}).get("currency") or currency or cust["currency"] or "usd",
            collection_method=sub["collection_method"]
            if sub
            else collection_method or "charge_automatically",
            days_until_due=sub["days_until_due"] if sub else days_until_due,
            auto_advance=auto_advance,
            billing_reason=billing_reason,
            subscription_id=sub["id"] if sub else None,
            subscription_metadata=sub["metadata"] if sub else None,
            period=period,
            metadata=metadata or {},
            description=description,
        )
        if sub is not None and sub["automatic_tax"]["enabled"]:
            inv["automatic_tax"]["enabled"] = True
        self.objects("invoice")[inv_id] = inv
        return inv

    def _add_subscription_line(
        self,
        inv: dict[str, Any],
        item: dict[str, Any],
        amount: int,
        period: tuple[int, int],
        description: str,
        proration: bool,
    ) -> None:
        inv["lines"]["data"].append(
            shapes.subscription_line(
                _new_id("il_"),
                invoice_id=inv["id"],
                item=item,
                amount=amount,
                period=period,
                description=description,
                proration=proration,
            )
        )

    def _attach_item(self, inv: dict[str, Any], ii: dict[str, Any]) -> None:
        ii["invoice"] = inv["id"]
        price = None
        if ii["pricing"] is not None:
            price = self.objects("price").get(ii["pricing"]["price_details"]["price"])
        inv["lines"]["data"].append(
            shapes.invoice_item_line(_new_id("il_"), invoice_id=inv["id"], ii=ii, price_obj=price)
        )

    def _pull_pending_items(
        self, ctx: Ctx, cust: dict[str, Any], inv: dict[str, Any], sub_id: str | None
    ) -> None:
        for ii in self.objects("invoiceitem").values():
            if ii["customer"] != cust["id"] or ii["invoice"] is not None:
                continue
            owner = (ii["parent"] or {}).get("subscription_details", {}).get("subscription")
            if owner is None or owner == sub_id:
                self._attach_item(inv, ii)

    def _recompute(self, inv: dict[str, Any]) -> None:
        subtotal = sum(line["amount"] for line in inv["lines"]["data"])
        added = included = 0
        if inv["automatic_tax"]["enabled"]:
            cust = self.objects("customer")[inv["customer"]]
            added, included = tax.apply(
                inv, cust, self.customer_tax_ids(cust["id"]), self._line_tax_behavior
            )
        total = subtotal + added
        inv.update(
            subtotal=subtotal,
            subtotal_excluding_tax=subtotal - included,
            total=total,
            total_excluding_tax=subtotal - included,
            amount_due=total,
            amount_remaining=total - inv["amount_paid"],
        )

    def _line_tax_behavior(self, line: dict[str, Any]) -> str:
        details = (line.get("pricing") or {}).get("price_details") or {}
        price = self.objects("price").get(details.get("price") or "")
        return str(price["tax_behavior"]) if price is not None else "unspecified"

    def _automatic_tax(self, cust: dict[str, Any], setting: Any, param: str) -> bool:
        """Whether ``automatic_tax[enabled]`` was asked for; Stripe refuses it for a customer
        whose location it cannot determine."""
        enabled = bool((setting or {}).get("enabled"))
        if enabled and not tax.has_location(cust):
            raise invalid_request(
                "The customer's location isn't recognized. Set a valid customer address in "
                "order to automatically calculate tax.",
                param=param,
                code="customer_tax_location_invalid",
            )
        return enabled

    def create_invoice(self, ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
        if not p.get("customer"):
            raise parameter_missing("customer")
        cust = self.get("customer", p["customer"], "customer")
        sub = (
            self.get("subscription", p["subscription"], "subscription")
            if p.get("subscription")
            else None
        )
        method = p.get("collection_method") or (sub["collection_method"] if sub else None)
        days = p.get("days_until_due")
        if days is None and sub is not None and "due_date" not in p:
            days = sub["days_until_due"]
        if method == "send_invoice" and "due_date" in p:
            if days is not None:
                raise invalid_request(
                    "You may only specify one of these parameters: days_until_due, due_date.",
                    param="due_date",
                )
        else:
            method, days = self._collection(method, days, "")
        now = self.now()
        inv = self._new_invoice(
            ctx,
            cust,
            None,
            billing_reason="manual",
            period=(now, now),
            collection_method=method,
            days_until_due=days,
            auto_advance=p.get("auto_advance", False),
            currency=p.get("currency"),
            metadata=_metadata({}, p.get("metadata")),
            description=p.get("description") or None,
        )
        if sub is not None:
            inv["subscription"] = sub["id"]
        if "automatic_tax" in p:
            inv["automatic_tax"]["enabled"] = self._automatic_tax(
                cust, p["automatic_tax"], "automatic_tax[enabled]"
            )
        if "due_date" in p:
            inv["due_date"] = p["due_date"]
        if p.get("pending_invoice_items_behavior") == "include":
            self._pull_pending_items(ctx, cust, inv, sub["id"] if sub else None)
        self._recompute(inv)
        self._emit(ctx, "invoice.created", inv)
        return inv

    def update_invoice(self, ctx: Ctx, p: dict[str, Any], inv_id: str) -> dict[str, Any]:
        inv = self.get("invoice", inv_id)
        editable_after_finalize = {"metadata", "auto_advance", "description", "footer", "expand"}
        if inv["status"] != "draft" and set(p) - editable_after_finalize:
            raise invalid_request(
                "Finalized invoices can't be updated in this way", code="invoice_not_editable"
            )
        inv["metadata"] = _metadata(inv["metadata"], p.get("metadata"))
        if "auto_advance" in p:
            inv["auto_advance"] = p["auto_advance"]
        if "description" in p:
            inv["description"] = p["description"] or None
        if "days_until_due" in p and inv["collection_method"] == "send_invoice":
            inv["due_date"] = inv["created"] + p["days_until_due"] * 86400
        self._emit(ctx, "invoice.updated", inv)
        return inv

    def _finalize(self, inv: dict[str, Any], ctx: Ctx) -> None:
        now = self.now()
        cust = self.objects("customer")[inv["customer"]]
        seq = cust["next_invoice_sequence"]
        cust["next_invoice_sequence"] = seq + 1
        self._recompute(inv)
        inv.update(
            status="open",
            number=f"{cust['invoice_prefix']}-{seq:04d}",
            effective_at=now,
            ending_balance=0,
            hosted_invoice_url=f"{ctx.base_url}/i/{inv['id']}",
            automatically_finalizes_at=None,
        )
        inv["status_transitions"]["finalized_at"] = now
        if inv["collection_method"] == "send_invoice":
            days = (
                0
                if inv["due_date"] is None
                else max(0, (inv["due_date"] - inv["created"]) // 86400)
            )
            sub = self.objects("subscription").get(inv["subscription"] or "")
            if sub is not None and sub["days_until_due"] is not None:
                days = sub["days_until_due"]
            inv["due_date"] = now + days * 86400
        self._emit(ctx, "invoice.finalized", inv)
        if inv["total"] == 0:
            self._mark_paid(inv, ctx)

    def finalize_invoice(self, ctx: Ctx, p: dict[str, Any], inv_id: str) -> dict[str, Any]:
        inv = self.get("invoice", inv_id)
        if inv["status"] != "draft":
            raise invalid_request(
                "This invoice is already finalized, you can't re-finalize a non-draft invoice.",
                code="invoice_not_editable",
            )
        if "auto_advance" in p:
            inv["auto_advance"] = p["auto_advance"]
        self._finalize(inv, ctx)
        return inv

    def send_invoice(self, ctx: Ctx, inv_id: str) -> dict[str, Any]:
        inv = self.get("invoice", inv_id)
        if inv["collection_method"] != "send_invoice":
            raise invalid_request(
                "You can only manually send an invoice if its collection method is 'send_invoice'."
            )
        if inv["status"] == "draft":
            self._finalize(inv, ctx)
        if inv["status"] not in ("open", "uncollectible"):
            raise invalid_request(f"You can't send an invoice that is {inv['status']}.")
        self._emit(ctx, "invoice.sent", inv)
        return inv

    def _mark_paid(self, inv: dict[str, Any], ctx: Ctx) -> None:
        now = self.now()
        inv.update(status="paid", amount_paid=inv["amount_due"], amount_remaining=0, attempted=True)
        inv["status_transitions"]["paid_at"] = now
        self._emit(ctx, "invoice.paid", inv)

    def _charge(self, inv: dict[str, Any], pm: str, ctx: Ctx, *, raise_on_decline: bool) -> None:
        inv["attempt_count"] += 1
        inv["attempted"] = True
        decline = _DECLINING_PAYMENT_METHODS.get(pm)
        if decline is None:
            self._mark_paid(inv, ctx)
            self._emit(ctx, "invoice.payment_succeeded", inv)
            return
        self._emit(ctx, "invoice.payment_failed", inv)
        if raise_on_decline:
            raise card_declined("Your card was declined.", decline_code=decline)

    def pay_invoice(self, ctx: Ctx, p: dict[str, Any], inv_id: str) -> dict[str, Any]:
        inv = self.get("invoice", inv_id)
        if inv["status"] == "draft":
            self._finalize(inv, ctx)
        if inv["status"] == "paid":
            raise invalid_request("Invoice is already paid.")
        if inv["status"] not in ("open", "uncollectible"):
            raise invalid_request(f"You can't pay an invoice that is {inv['status']}.")
        if p.get("paid_out_of_band"):
            self._mark_paid(inv, ctx)
            return inv
        pm = (
            p.get("payment_method")
            or self.objects("customer")[inv["customer"]]["invoice_settings"][
                "default_payment_method"
            ]
        )
        if not pm:
            raise invalid_request(
                "This customer has no attached payment source or default payment method.",
                param="payment_method",
                code="parameter_missing",
            )
        self._charge(inv, pm, ctx, raise_on_decline=True)
        return inv

    def void_invoice(self, ctx: Ctx, inv_id: str) -> dict[str, Any]:
        inv = self.get("invoice", inv_id)
        if inv["status"] not in ("open", "uncollectible"):
            raise invalid_request(
                f"You can only void open or uncollectible invoices; this invoice is "
                f"{inv['status']}.",
                code="invoice_not_editable" if inv["status"] == "draft" else None,
            )
        inv.update(status="void", amount_remaining=0)
        inv["status_transitions"]["voided_at"] = self.now()
        self._emit(ctx, "invoice.voided", inv)
        return inv

    def mark_uncollectible(self, ctx: Ctx, inv_id: str) -> dict[str, Any]:
        inv = self.get("invoice", inv_id)
        if inv["status"] != "open":
            raise invalid_request(
                f"You can only mark open invoices uncollectible; this invoice is {inv['status']}."
            )
        inv["status"] = "uncollectible"
        inv["status_transitions"]["marked_uncollectible_at"] = self.now()
        self._emit(ctx, "invoice.marked_uncollectible", inv)
        return inv

    def delete_invoice(self, ctx: Ctx, inv_id: str) -> dict[str, Any]:
        inv = self.get("invoice", inv_id)
        if inv["status"] != "draft" or inv["billing_reason"] != "manual":
            raise invalid_request(
                "You can only delete draft invoices that are not part of a subscription. "
                "Void it instead.",
            )
        for ii in self.objects("invoiceitem").values():
            if ii["invoice"] == inv_id:
                ii["invoice"] = None
        del self.objects("invoice")[inv_id]
        self._emit(ctx, "invoice.deleted", inv)
        return {"id": inv_id, "object": "invoice", "deleted": True}

    def list_invoices(self, p: dict[str, Any], expand: list[str]) -> dict[str, Any]:
        def keep(inv: dict[str, Any]) -> bool:
            return all(
                key not in p or inv[key] == p[key]
                for key in ("customer", "subscription", "status", "collection_method")
            )

        items = [i for i in self.objects("invoice").values() if keep(i)]
        return self.list_response(items, p, "/v1/invoices", expand)

    def invoice_lines(self, p: dict[str, Any], inv_id: str, expand: list[str]) -> dict[str, Any]:
        inv = self.get("invoice", inv_id, "invoice", in_path=True)
        # Lines keep their own order (oldest first), unlike top-level lists.
        return self.list_response(
            list(reversed(inv["lines"]["data"])), p, f"/v1/invoices/{inv_id}/lines", expand
        )

    def create_preview(self, ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
        """Preview without keeping anything: run the creation on a scratch copy of the state."""
        snapshot = copy.deepcopy(self.store.data)
        try:
            inv = self._preview(ctx, p)
            preview = self.render(inv, [])
        finally:
            self.store.data = snapshot
        preview["id"] = _new_id("upcoming_in_")
        preview["lines"]["url"] = "/v1/invoices/create_preview/lines"
        for line in preview["lines"]["data"]:
            line["invoice"] = preview["id"]
        return preview

    def _preview(self, ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("schedule"):
            sched = self.get("subscription_schedule", p["schedule"], "schedule")
            if sched["status"] == "not_started":
                sched["phases"][0]["start_date"] = min(sched["phases"][0]["start_date"], self.now())
                self._start_schedule(sched, ctx)
                return self.objects("invoice")[
                    self.objects("subscription")[sched["subscription"]]["latest_invoice"]
                ]
            p = {**p, "subscription": sched["subscription"]}
        if p.get("subscription"):
            sub = self.get("subscription", p["subscription"], "subscription")
            if sub["status"] == "canceled":
                raise invalid_request(
                    "No upcoming invoices for a canceled subscription.",
                    code="invoice_upcoming_none",
                )
            # The next period bills what the schedule's next phase holds, if it starts by then.
            owner = self.objects("subscription_schedule").get(sub["schedule"] or "")
            period_end = sub["items"]["data"][0]["current_period_end"]
            current = owner["current_phase"] if owner is not None else None
            if owner is not None and current and current["end_date"] <= period_end:
                self._advance_phase(owner, sub, ctx)
            self._renew(sub, ctx)
            return self.objects("invoice")[sub["latest_invoice"]]
        if p.get("invoice_items") and not p.get("subscription_details"):
            return self._preview_one_off(ctx, p)
        details = p.get("subscription_details") or {}
        if not p.get("customer"):
            raise parameter_missing("customer")
        if not details.get("items"):
            raise parameter_missing("subscription_details[items]")
        cust = self.get("customer", p["customer"], "customer")
        items = self._resolve_items(ctx, details["items"], "subscription_details[items]")
        start = details.get("start_date", self.now())
        sub = self._start_subscription(
            ctx,
            cust,
            items,
            [],
            start=start,
            anchor=details.get("billing_cycle_anchor", start),
            collection_method="send_invoice",
            days_until_due=0,
            metadata={},
            description=None,
            proration_behavior=details.get("proration_behavior", "create_prorations"),
            payment_behavior="default_incomplete",
            schedule_id=None,
        )
        return self.objects("invoice")[sub["latest_invoice"]]

    def _preview_one_off(self, ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
        """A preview of a one-off invoice of ``invoice_items`` for the customer, taxed when
        ``automatic_tax[enabled]`` is asked for (the caller keeps nothing of it)."""
        if not p.get("customer"):
            raise parameter_missing("customer")
        cust = self.get("customer", p["customer"], "customer")
        adds = self._resolve_add_invoice_items(ctx, p["invoice_items"], "invoice_items")
        now = self.now()
        inv = self._new_invoice(
            ctx,
            cust,
            None,
            billing_reason="manual",
            period=(now, now),
            collection_method="send_invoice",
            days_until_due=0,
            auto_advance=False,
            currency=p.get("currency") or adds[0][0]["currency"],
        )
        for price, quantity, metadata in adds:
            self._new_invoice_item(
                ctx,
                cust,
                price=price,
                quantity=quantity,
                amount=None,
                currency=price["currency"],
                description=None,
                metadata=metadata,
                period=(now, now),
                subscription_id=None,
                invoice=inv,
            )
        inv["automatic_tax"]["enabled"] = self._automatic_tax(
            cust, p.get("automatic_tax"), "automatic_tax[enabled]"
        )
        self._recompute(inv)
        return inv

    # --- invoice items -------------------------------------------------------------------------

    def _new_invoice_item(
        self,
        ctx: Ctx,
        cust: dict[str, Any],
        *,
        price: dict[str, Any] | None,
        quantity: int,
        amount: int | None,
        currency: str,
        description: str | None,
        metadata: dict[str, str],
        period: tuple[int, int],
        subscription_id: str | None,
        invoice: dict[str, Any] | None,
    ) -> dict[str, Any]:
        if price is not None:
            amount = line_amount(price["unit_amount_decimal"], quantity)
            description = description or self.objects("product")[price["product"]]["name"]
        assert amount is not None
        ii = shapes.invoice_item(
            _new_id("ii_"),
            self.now(),
            customer_id=cust["id"],
            price_obj=price,
            currency=currency,
            amount=amount,
            quantity=quantity,
            description=description,
            period=period,
            subscription_id=subscription_id,
            invoice_id=None,
            metadata=metadata,
        )
        self.objects("invoiceitem")[ii["id"]] = ii
        if invoice is not None:
            self._attach_item(invoice, ii)
        self._emit(ctx, "invoiceitem.created", ii)
        return ii

    def create_invoice_item(self, ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
        if not p.get("customer"):
            raise parameter_missing("customer")
        cust = self.get("customer", p["customer"], "customer")
        inv = None
        if p.get("invoice"):
            inv = self.get("invoice", p["invoice"], "invoice")
            if inv["status"] != "draft":
                raise invalid_request(
                    "Invoice items can only be added to draft invoices.",
                    param="invoice",
                    code="invoice_not_editable",
                )
        sub_id = None
        if p.get("subscription"):
            sub_id = self.get("subscription", p["subscription"], "subscription")["id"]
        quantity = p.get("quantity", 1)
        price = None
        amount = None
        if (p.get("pricing") or {}).get("price"):
            price = self.get("price", p["pricing"]["price"], "pricing[price]")
        elif p.get("price_data"):
            data = p["price_data"]
            price = self._new_price(ctx, data, "price_data", active=False)
        elif "amount" in p:
            amount = p["amount"]
            if not p.get("currency"):
                raise parameter_missing("currency")
        elif "unit_amount_decimal" in p:
            amount = line_amount(str(p["unit_amount_decimal"]), quantity)
        else:
            raise parameter_missing("amount")
        currency = (
            price["currency"]
            if price
            else p["currency"].lower()
            if p.get("currency")
            else cust["currency"] or "usd"
        )
        if inv is not None and currency != inv["currency"]:
            raise invalid_request(
                "The currency of the invoice item must match the invoice's currency.",
                param="currency",
            )
        now = self.now()
        period_in = p.get("period") or {}
        ii = self._new_invoice_item(
            ctx,
            cust,
            price=price,
            quantity=quantity,
            amount=amount,
            currency=currency,
            description=p.get("description") or None,
            metadata=_metadata({}, p.get("metadata")),
            period=(period_in.get("start", now), period_in.get("end", now)),
            subscription_id=sub_id,
            invoice=inv,
        )
        if inv is not None:
            self._recompute(inv)
        return ii

    def delete_invoice_item(self, ctx: Ctx, ii_id: str) -> dict[str, Any]:
        ii = self.get("invoiceitem", ii_id)
        if ii["invoice"] is not None:
            inv = self.objects("invoice").get(ii["invoice"])
            if inv is not None and inv["status"] != "draft":
                raise invalid_request(
                    "This invoice item is on a finalized invoice and cannot be deleted."
                )
            if inv is not None:
                inv["lines"]["data"] = [
                    line
                    for line in inv["lines"]["data"]
                    if (line["parent"].get("invoice_item_details") or {}).get("invoice_item")
                    != ii_id
                ]
                self._recompute(inv)
        del self.objects("invoiceitem")[ii_id]
        self._emit(ctx, "invoiceitem.deleted", ii)
        return {"id": ii_id, "object": "invoiceitem", "deleted": True}

    def list_invoice_items(self, p: dict[str, Any], expand: list[str]) -> dict[str, Any]:
        def keep(ii: dict[str, Any]) -> bool:
            if "customer" in p and ii["customer"] != p["customer"]:
                return False
            if "invoice" in p and ii["invoice"] != p["invoice"]:
                return False
            return "pending" not in p or (ii["invoice"] is None) == p["pending"]

        items = [i for i in self.objects("invoiceitem").values() if keep(i)]
        return self.list_response(items, p, "/v1/invoiceitems", expand)

    # --- events --------------------------------------------------------------------------------

    def list_events(self, p: dict[str, Any], expand: list[str]) -> dict[str, Any]:
        patterns = [p["type"]] if p.get("type") else list(p.get("types") or [])

        created = p.get("created")

        def keep(evt: dict[str, Any]) -> bool:
            if not _created_matches(evt["created"], created):
                return False
            if not patterns:
                return True
            return any(
                evt["type"] == pat or (pat.endswith("*") and evt["type"].startswith(pat[:-1]))
                for pat in patterns
            )

        items = [e for e in self.objects("event").values() if keep(e)]
        return self.list_response(items, p, "/v1/events", expand)


def _check_email(p: dict[str, Any]) -> None:
    email = p.get("email")
    if email and not _EMAIL.fullmatch(email):
        raise parameter_invalid("email", f"Invalid email address: {email}", "email_invalid")


def _created_matches(created: int, condition: Any) -> bool:
    """Stripe's ``created`` list filter: an exact timestamp or a ``gt/gte/lt/lte`` range."""
    if condition is None:
        return True
    if not isinstance(condition, dict):
        return created == int(condition)
    tests = {
        "gt": lambda bound: created > bound,
        "gte": lambda bound: created >= bound,
        "lt": lambda bound: created < bound,
        "lte": lambda bound: created <= bound,
    }
    return all(tests[op](int(bound)) for op, bound in condition.items() if op in tests)


def _json_copy(value: Any) -> Any:
    """A deep copy of JSON-shaped state (dicts, lists, scalars): what render hands out may be
    changed by the caller without touching the store. A third of the cost of ``copy.deepcopy``,
    which was the emulators' largest single cost under load (bench/RESULTS.md)."""
    if isinstance(value, dict):
        return {key: _json_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_copy(item) for item in value]
    return value


def _schedule_due(sched: dict[str, Any]) -> float:
    if sched["status"] == "not_started":
        return float(sched["phases"][0]["start_date"])
    if sched["status"] == "active" and sched["current_phase"]:
        return float(sched["current_phase"]["end_date"])
    return math.inf


def _subscription_due(sub: dict[str, Any]) -> float:
    if sub["status"] in ("active", "incomplete", "past_due"):
        return float(sub["items"]["data"][0]["current_period_end"])
    return math.inf


def _invoice_due(inv: dict[str, Any]) -> float:
    at = inv["automatically_finalizes_at"]
    if inv["status"] == "draft" and inv["auto_advance"] and at is not None:
        return float(at)
    return math.inf
