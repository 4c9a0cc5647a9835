"""The state and rules of the Chargebee emulator: Product Catalog 2.0 billing for one site.

Resources: customers, item families, items, item prices, subscriptions (created with items, their
unit prices overridable per subscription), ramps (price and quantity changes on a future date),
invoices (a subscription's, or one-off for charge items), and the e-mail log of sent invoices.

Time is the emulator's clock (tests move it). Subscriptions are brought up to date lazily before
every request: a ``future`` subscription whose start has come activates and raises its first
invoice; an active one renews at ``next_billing_at`` (applying the ramps due by then) until its
``billing_cycles`` are used, then it is cancelled.

Money is integer minor units, as in Chargebee's API. Invoices of a subscription with
``auto_collection=off`` wait for an offline payment (``payment_due``); with ``on`` the sandbox site
has no payment method to charge, so they are ``not_paid``. Invoices are e-mailed only by
``POST /invoices/{id}/send_email``: the sandbox site has its automatic invoice e-mails turned off,
which is how a site that lets QTC reconcile before sending is configured.
"""

from __future__ import annotations

import calendar
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sandbox.chargebee import errors as err
from sandbox.chargebee.forms import boolean, integer, json_param, list_value
from sandbox.common import StateStore

CURRENCIES = frozenset({"USD", "EUR", "GBP"})
SITE_CURRENCY = "USD"
MAX_ID_LENGTH = 50
_ID = re.compile(r"^[A-Za-z0-9_.@-]+$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PERIOD_UNITS = ("day", "week", "month", "year")


def initial_state() -> dict[str, Any]:
    return {
        "seq": 0,
        "invoice_seq": 0,
        "customers": {},
        "item_families": {},
        "items": {},
        "item_prices": {},
        "subscriptions": {},
        "ramps": {},
        "invoices": {},
        "email_logs": [],
        "idempotency": {},
    }


def _add_period(ts: int, unit: str, count: int) -> int:
    """``ts`` moved by ``count`` periods, counted from ``ts`` (day of month kept, clamped)."""
    if unit in ("day", "week"):
        return ts + count * (7 if unit == "week" else 1) * 86400
    start = datetime.fromtimestamp(ts, UTC)
    months = count * (12 if unit == "year" else 1)
    index = start.month - 1 + months
    year, month = start.year + index // 12, index % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return int(start.replace(year=year, month=month, day=day).timestamp())


def _check_id(param: str, value: str) -> str:
    if not value:
        raise err.blank(param)
    if len(value) > MAX_ID_LENGTH:
        raise err.wrong_value(param, f"cannot be more than {MAX_ID_LENGTH} characters")
    if not _ID.match(value):
        raise err.wrong_value(param, "invalid characters")
    return value


def _enum(param: str, value: Any, allowed: tuple[str, ...]) -> str:
    text = str(value)
    if text not in allowed:
        raise err.wrong_value(param, f"invalid value {text}; expected one of {', '.join(allowed)}")
    return text


def _currency(param: str, value: Any) -> str:
    code = str(value)
    if code not in CURRENCIES:
        raise err.wrong_value(param, f"{code} is not enabled for this site")
    return code


class ChargebeeBackend:
    """Every operation of the emulated site; the app holds ``store.lock`` around each call."""

    def __init__(self, store: StateStore, clock: Callable[[], float]) -> None:
        self.store = store
        self.clock = clock

    @property
    def data(self) -> dict[str, Any]:
        return self.store.data

    def now(self) -> int:
        return int(self.clock())

    def _new_id(self, prefix: str = "") -> str:
        self.data["seq"] += 1
        return f"{prefix}{secrets.token_hex(6)}{self.data['seq']}"

    def get(self, kind: str, id: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] | None = self.data[kind].get(id)
        if found is None or found.get("deleted"):
            raise err.not_found(f"{name} {id}")
        return found

    def _touch(self, obj: dict[str, Any]) -> None:
        obj["updated_at"] = self.now()
        obj["resource_version"] = int(self.clock() * 1000)

    # --- customers ------------------------------------------------------------------------

    def create_customer(self, p: dict[str, Any]) -> dict[str, Any]:
        id = _check_id("id", p["id"]) if "id" in p else self._new_id("cb")
        if id in self.data["customers"]:
            raise err.duplicate("id", id)
        email = p.get("email")
        if email is not None and not _EMAIL.match(email):
            raise err.wrong_value("email", "invalid email format")
        address = p.get("billing_address")
        if address is not None and not isinstance(address, dict):
            raise err.wrong_value("billing_address", "must be an object")
        now = self.now()
        customer: dict[str, Any] = {
            "id": id,
            "object": "customer",
            "first_name": p.get("first_name"),
            "last_name": p.get("last_name"),
            "email": email,
            "company": p.get("company"),
            "phone": p.get("phone"),
            "vat_number": p.get("vat_number"),
            "auto_collection": _enum(
                "auto_collection", p.get("auto_collection", "on"), ("on", "off")
            ),
            "net_term_days": integer("net_term_days", p.get("net_term_days", 0), minimum=0),
            "preferred_currency_code": _currency(
                "preferred_currency_code", p.get("preferred_currency_code", SITE_CURRENCY)
            ),
            "allow_direct_debit": False,
            "taxability": "taxable",
            "pii_cleared": "active",
            "card_status": "no_card",
            "promotional_credits": 0,
            "refundable_credits": 0,
            "excess_payments": 0,
            "unbilled_charges": 0,
            "created_at": now,
            "deleted": False,
        }
        if address is not None:
            if not address.get("line1"):
                raise err.blank("billing_address[line1]")
            customer["billing_address"] = {
                **{k: v for k, v in address.items() if v != ""},
                "object": "billing_address",
                "validation_status": "not_validated",
            }
        if "meta_data" in p:
            customer["meta_data"] = json_param("meta_data", p["meta_data"])
        self._touch(customer)
        self.data["customers"][id] = customer
        return customer

    # --- product catalog ------------------------------------------------------------------

    def create_item_family(self, p: dict[str, Any]) -> dict[str, Any]:
        id = _check_id("id", p.get("id", ""))
        if not p.get("name"):
            raise err.blank("name")
        if id in self.data["item_families"]:
            raise err.duplicate("id", id)
        family = {
            "id": id,
            "object": "item_family",
            "name": p["name"],
            "description": p.get("description"),
            "status": "active",
            "deleted": False,
        }
        self._touch(family)
        self.data["item_families"][id] = family
        return family

    def create_item(self, p: dict[str, Any]) -> dict[str, Any]:
        id = _check_id("id", p.get("id", ""))
        if not p.get("name"):
            raise err.blank("name")
        if "type" not in p:
            raise err.blank("type")
        kind = _enum("type", p["type"], ("plan", "addon", "charge"))
        family_id = p.get("item_family_id")
        if not family_id:
            raise err.blank("item_family_id")
        if family_id not in self.data["item_families"]:
            raise err.not_found(f"Item family {family_id}", "item_family_id")
        if id in self.data["items"]:
            raise err.duplicate("id", id)
        item: dict[str, Any] = {
            "id": id,
            "object": "item",
            "name": p["name"],
            "external_name": p.get("external_name", p["name"]),
            "description": p.get("description"),
            "type": kind,
            "item_family_id": family_id,
            "status": "active",
            "is_shippable": False,
            "is_giftable": False,
            "enabled_for_checkout": True,
            "enabled_in_portal": True,
            "item_applicability": "all",
            "metered": False,
            "channel": "web",
            "deleted": False,
        }
        if "metadata" in p:
            item["metadata"] = json_param("metadata", p["metadata"])
        self._touch(item)
        self.data["items"][id] = item
        return item

    def create_item_price(self, p: dict[str, Any]) -> dict[str, Any]:
        id = _check_id("id", p.get("id", ""))
        if not p.get("name"):
            raise err.blank("name")
        item_id = p.get("item_id")
        if not item_id:
            raise err.blank("item_id")
        item = self.data["items"].get(item_id)
        if item is None:
            raise err.not_found(f"Item {item_id}", "item_id")
        if id in self.data["item_prices"]:
            raise err.duplicate("id", id)
        if any(
            ip["name"] == p["name"] for ip in self.data["item_prices"].values() if not ip["deleted"]
        ):
            raise err.duplicate("name", p["name"])
        model = _enum(
            "pricing_model",
            p.get("pricing_model", "flat_fee"),
            ("flat_fee", "per_unit", "tiered", "volume", "stairstep"),
        )
        if model not in ("flat_fee", "per_unit"):
            raise err.wrong_value("pricing_model", "tiered pricing is not emulated")
        price: dict[str, Any] = {
            "id": id,
            "object": "item_price",
            "name": p["name"],
            "external_name": p.get("external_name", p["name"]),
            "item_family_id": item["item_family_id"],
            "item_id": item_id,
            "item_type": item["type"],
            "status": "active",
            "pricing_model": model,
            "price": integer("price", p.get("price", 0), minimum=0),
            "currency_code": _currency("currency_code", p.get("currency_code", SITE_CURRENCY)),
            "is_taxable": True,
            "free_quantity": 0,
            "created_at": self.now(),
            "deleted": False,
        }
        if item["type"] == "charge":
            if "period" in p or "period_unit" in p:
                raise err.wrong_value("period_unit", "not applicable for charge items")
        else:
            if "period_unit" not in p:
                raise err.blank("period_unit")
            price["period_unit"] = _enum("period_unit", p["period_unit"], PERIOD_UNITS)
            price["period"] = integer("period", p.get("period", 1), minimum=1)
        if "metadata" in p:
            price["metadata"] = json_param("metadata", p["metadata"])
        self._touch(price)
        self.data["item_prices"][id] = price
        return price

    # --- subscriptions --------------------------------------------------------------------

    def create_subscription(self, customer_id: str, p: dict[str, Any]) -> dict[str, Any]:
        customer = self.get("customers", customer_id, "Customer")
        id = _check_id("id", p["id"]) if "id" in p else self._new_id("AzZ")
        if id in self.data["subscriptions"]:
            raise err.duplicate("id", id)
        rows = p.get("subscription_items")
        if not rows:
            raise err.blank("subscription_items[item_price_id][0]")
        items = [self._subscription_item(i, row) for i, row in enumerate(rows)]
        plans = [i for i in items if i["item_type"] == "plan"]
        if len(plans) != 1:
            raise err.wrong_value(
                "subscription_items[item_price_id]", "exactly one plan item price is required"
            )
        plan_price = self.data["item_prices"][plans[0]["item_price_id"]]
        currency = plan_price["currency_code"]
        for i, item in enumerate(items):
            ip = self.data["item_prices"][item["item_price_id"]]
            if ip["currency_code"] != currency:
                raise err.wrong_value(
                    f"subscription_items[item_price_id][{i}]",
                    f"currency {ip['currency_code']} differs from the plan's {currency}",
                )
            if ip["item_type"] == "addon" and (
                ip["period"],
                ip["period_unit"],
            ) != (plan_price["period"], plan_price["period_unit"]):
                raise err.wrong_value(
                    f"subscription_items[item_price_id][{i}]",
                    "addon billing period differs from the plan's",
                )
        now = self.now()
        start = integer("start_date", p["start_date"]) if "start_date" in p else now
        auto_collection = _enum(
            "auto_collection",
            p.get("auto_collection", customer["auto_collection"]),
            ("on", "off"),
        )
        subscription: dict[str, Any] = {
            "id": id,
            "object": "subscription",
            "customer_id": customer_id,
            "currency_code": currency,
            "billing_period": plan_price["period"],
            "billing_period_unit": plan_price["period_unit"],
            "start_date": start,
            "status": "future",
            "auto_collection": auto_collection,
            "net_term_days": integer(
                "net_term_days", p.get("net_term_days", customer["net_term_days"]), minimum=0
            ),
            "subscription_items": items,
            "has_scheduled_changes": False,
            "created_at": now,
            "channel": "web",
            "deleted": False,
            "due_invoices_count": 0,
            "mrr": 0,
        }
        if "billing_cycles" in p:
            # Chargebee shows only what is left of them.
            cycles = integer("billing_cycles", p["billing_cycles"], minimum=1)
            subscription["remaining_billing_cycles"] = cycles
        if "po_number" in p:
            subscription["po_number"] = p["po_number"]
        if "meta_data" in p:
            subscription["meta_data"] = json_param("meta_data", p["meta_data"])
        subscription["_first_invoice_pending"] = boolean(
            "first_invoice_pending", p.get("first_invoice_pending", "false")
        )
        subscription["_create_pending_invoices"] = boolean(
            "create_pending_invoices", p.get("create_pending_invoices", "false")
        )
        if subscription["_create_pending_invoices"] and boolean(
            "auto_close_invoices", p.get("auto_close_invoices", "true")
        ):
            # Chargebee closes pending invoices itself unless told not to.
            subscription["_create_pending_invoices"] = False
        subscription["next_billing_at"] = start
        self._touch(subscription)
        self.data["subscriptions"][id] = subscription
        self.advance_subscription(subscription)
        return subscription

    def _subscription_item(self, index: int, row: dict[str, Any]) -> dict[str, Any]:
        param = f"subscription_items[item_price_id][{index}]"
        price_id = row.get("item_price_id")
        if not price_id:
            raise err.blank(param)
        ip = self.data["item_prices"].get(price_id)
        if ip is None or ip["deleted"]:
            raise err.not_found(f"Item price {price_id}", param)
        quantity = integer(
            f"subscription_items[quantity][{index}]", row.get("quantity", 1), minimum=1
        )
        if ip["pricing_model"] == "flat_fee" and quantity != 1:
            raise err.wrong_value(
                f"subscription_items[quantity][{index}]", "must be 1 for flat_fee pricing"
            )
        unit_price = (
            integer(f"subscription_items[unit_price][{index}]", row["unit_price"], minimum=0)
            if "unit_price" in row
            else ip["price"]
        )
        item: dict[str, Any] = {
            "item_price_id": price_id,
            "item_type": ip["item_type"],
            "quantity": quantity,
            "unit_price": unit_price,
            "amount": unit_price * quantity,
            "object": "subscription_item",
        }
        if ip["item_type"] == "charge":
            item["charge_once"] = boolean(
                f"subscription_items[charge_once][{index}]", row.get("charge_once", "true")
            )
            item["charge_on_option"] = _enum(
                f"subscription_items[charge_on_option][{index}]",
                row.get("charge_on_option", "immediately"),
                ("immediately", "on_event"),
            )
        return item

    def advance_all(self) -> None:
        for subscription in self.data["subscriptions"].values():
            self.advance_subscription(subscription)

    def advance_subscription(self, sub: dict[str, Any]) -> None:
        """Activate and renew ``sub`` up to now; each billing raises one invoice."""
        now = self.now()
        if sub["status"] == "future" and sub["start_date"] <= now:
            self._bill_term(sub, sub["start_date"], first=True)
            sub["status"] = "active"
            sub["activated_at"] = sub["started_at"] = sub["start_date"]
        while sub["status"] == "active" and sub["next_billing_at"] <= now:
            if sub.get("remaining_billing_cycles") == 0:
                sub["status"] = "cancelled"
                sub["cancelled_at"] = sub["current_term_end"]
                sub.pop("next_billing_at", None)
                self._touch(sub)
                break
            self._bill_term(sub, sub["next_billing_at"], first=False)

    def _bill_term(self, sub: dict[str, Any], at: int, *, first: bool) -> None:
        self._apply_ramps(sub, at)
        # Terms are counted from the start, never chained: a subscription started on the 31st
        # bills on the last day of shorter months and on the 31st again after them.
        sub["_terms_billed"] = sub.get("_terms_billed", 0) + 1
        end = _add_period(
            sub["start_date"],
            sub["billing_period_unit"],
            sub["billing_period"] * sub["_terms_billed"],
        )
        sub["current_term_start"], sub["current_term_end"] = at, end
        sub["next_billing_at"] = end
        if "remaining_billing_cycles" in sub:
            sub["remaining_billing_cycles"] -= 1
        lines: list[dict[str, Any]] = []
        kept = []
        for item in sub["subscription_items"]:
            if item["item_type"] == "charge":
                lines.append(self._line(item["item_price_id"], item, at, at, sub))
                if not item.get("charge_once", True):
                    kept.append(item)
                continue
            lines.append(self._line(item["item_price_id"], item, at, end, sub))
            kept.append(item)
        sub["subscription_items"] = kept
        sub["mrr"] = sum(i["amount"] for i in kept if i["item_type"] != "charge")
        pending = sub["_create_pending_invoices"] or (first and sub["_first_invoice_pending"])
        self._new_invoice(
            customer_id=sub["customer_id"],
            subscription_id=sub["id"],
            currency=sub["currency_code"],
            date=at,
            net_term_days=sub["net_term_days"],
            auto_collection=sub["auto_collection"],
            lines=lines,
            pending=pending,
            first=first,
            po_number=sub.get("po_number"),
        )
        self._touch(sub)

    def _line(
        self,
        price_id: str,
        item: dict[str, Any],
        date_from: int,
        date_to: int,
        sub: dict[str, Any] | None,
    ) -> dict[str, Any]:
        ip = self.data["item_prices"][price_id]
        line: dict[str, Any] = {
            "id": self._new_id("li_"),
            "object": "line_item",
            "date_from": date_from,
            "date_to": date_to,
            "unit_amount": item["unit_price"],
            "quantity": item["quantity"],
            "amount": item["unit_price"] * item["quantity"],
            "pricing_model": ip["pricing_model"],
            "is_taxed": False,
            "tax_amount": 0,
            "discount_amount": 0,
            "item_level_discount_amount": 0,
            "description": item.get("description") or ip["external_name"],
            "entity_description": ip.get("description"),
            "entity_type": f"{ip['item_type']}_item_price",
            "entity_id": price_id,
        }
        if sub is not None:
            line["subscription_id"] = sub["id"]
            line["customer_id"] = sub["customer_id"]
        return line

    def _apply_ramps(self, sub: dict[str, Any], at: int) -> None:
        due = sorted(
            (
                r
                for r in self.data["ramps"].values()
                if r["subscription_id"] == sub["id"]
                and r["status"] == "scheduled"
                and not r["deleted"]
                and r["effective_from"] <= at
            ),
            key=lambda r: r["effective_from"],
        )
        for ramp in due:
            by_price = {i["item_price_id"]: i for i in sub["subscription_items"]}
            for change in ramp.get("items_to_update", []):
                item = by_price[change["item_price_id"]]
                for key in ("quantity", "unit_price"):
                    if key in change:
                        item[key] = change[key]
                item["amount"] = item["unit_price"] * item["quantity"]
            ramp["status"] = "succeeded"
            self._touch(ramp)

    # --- ramps ----------------------------------------------------------------------------

    def create_ramp(self, subscription_id: str, p: dict[str, Any]) -> dict[str, Any]:
        sub = self.get("subscriptions", subscription_id, "Subscription")
        if "effective_from" not in p:
            raise err.blank("effective_from")
        effective = integer("effective_from", p["effective_from"])
        if effective <= self.now():
            raise err.wrong_value("effective_from", "should be a date in the future")
        if sub["status"] in ("cancelled", "non_renewing"):
            raise err.invalid_state(f"Subscription {sub['id']} is {sub['status']}")
        for ramp in self.data["ramps"].values():
            if (
                ramp["subscription_id"] == sub["id"]
                and ramp["effective_from"] == effective
                and not ramp["deleted"]
            ):
                raise err.wrong_value(
                    "effective_from", "a ramp already exists for this subscription on that date"
                )
        present = {i["item_price_id"] for i in sub["subscription_items"]}
        updates = []
        for i, row in enumerate(p.get("items_to_update", [])):
            price_id = row.get("item_price_id")
            if not price_id:
                raise err.blank(f"items_to_update[item_price_id][{i}]")
            if price_id not in present:
                raise err.wrong_value(
                    f"items_to_update[item_price_id][{i}]",
                    f"{price_id} is not an item of the subscription",
                )
            update: dict[str, Any] = {"item_price_id": price_id}
            if "quantity" in row:
                update["quantity"] = integer(
                    f"items_to_update[quantity][{i}]", row["quantity"], minimum=1
                )
            if "unit_price" in row:
                update["unit_price"] = integer(
                    f"items_to_update[unit_price][{i}]", row["unit_price"], minimum=0
                )
            updates.append(update)
        if not updates:
            raise err.blank("items_to_update[item_price_id][0]")
        ramp = {
            "id": self._new_id("ramp_"),
            "object": "ramp",
            "subscription_id": sub["id"],
            "effective_from": effective,
            "description": p.get("description"),
            "status": "scheduled",
            "items_to_update": updates,
            "created_at": self.now(),
            "deleted": False,
        }
        self._touch(ramp)
        self.data["ramps"][ramp["id"]] = ramp
        return ramp

    # --- invoices -------------------------------------------------------------------------

    def _new_invoice(
        self,
        *,
        customer_id: str,
        subscription_id: str | None,
        currency: str,
        date: int,
        net_term_days: int,
        auto_collection: str,
        lines: list[dict[str, Any]],
        pending: bool,
        first: bool,
        po_number: str | None,
    ) -> dict[str, Any]:
        self.data["invoice_seq"] += 1
        total = sum(line["amount"] for line in lines)
        customer = self.data["customers"][customer_id]
        invoice: dict[str, Any] = {
            "id": str(self.data["invoice_seq"]),
            "object": "invoice",
            "customer_id": customer_id,
            "recurring": subscription_id is not None,
            "status": "pending",
            "price_type": "tax_exclusive",
            "date": date,
            "net_term_days": net_term_days,
            "due_date": date + net_term_days * 86400,
            "exchange_rate": 1.0,
            "currency_code": currency,
            "sub_total": total,
            "tax": 0,
            "total": total,
            "amount_due": total,
            "amount_paid": 0,
            "amount_adjusted": 0,
            "write_off_amount": 0,
            "credits_applied": 0,
            "round_off_amount": 0,
            "first_invoice": first,
            "has_advance_charges": False,
            "term_finalized": True,
            "is_gifted": False,
            "generated_at": date,
            "line_items": lines,
            "discounts": [],
            "taxes": [],
            "linked_payments": [],
            "deleted": False,
            "_auto_collection": auto_collection,
        }
        if subscription_id is not None:
            invoice["subscription_id"] = subscription_id
        if po_number:
            invoice["po_number"] = po_number
        if customer.get("billing_address"):
            invoice["billing_address"] = {
                k: v
                for k, v in customer["billing_address"].items()
                if k not in ("object", "validation_status")
            }
        if not pending:
            self._close(invoice)
        self._touch(invoice)
        self.data["invoices"][invoice["id"]] = invoice
        return invoice

    def _close(self, invoice: dict[str, Any]) -> None:
        # No payment method on the sandbox site: auto-collection finds nothing to charge.
        invoice["status"] = "payment_due" if invoice["_auto_collection"] == "off" else "not_paid"
        if invoice["status"] == "not_paid":
            invoice["dunning_status"] = "in_progress"
        self._touch(invoice)

    def create_invoice_for_items(self, p: dict[str, Any]) -> dict[str, Any]:
        customer_id = p.get("customer_id")
        if not customer_id:
            raise err.blank("customer_id")
        customer = self.get("customers", customer_id, "Customer")
        currency = _currency(
            "currency_code", p.get("currency_code", customer["preferred_currency_code"])
        )
        date = integer("invoice_date", p["invoice_date"]) if "invoice_date" in p else self.now()
        lines = []
        for i, row in enumerate(p.get("item_prices", [])):
            param = f"item_prices[item_price_id][{i}]"
            price_id = row.get("item_price_id")
            if not price_id:
                raise err.blank(param)
            ip = self.data["item_prices"].get(price_id)
            if ip is None or ip["deleted"]:
                raise err.not_found(f"Item price {price_id}", param)
            if ip["item_type"] != "charge":
                raise err.wrong_value(param, "only charge item prices can be invoiced this way")
            if ip["currency_code"] != currency:
                raise err.wrong_value(param, f"currency {ip['currency_code']} is not {currency}")
            item = {
                "quantity": integer(
                    f"item_prices[quantity][{i}]", row.get("quantity", 1), minimum=1
                ),
                "unit_price": integer(
                    f"item_prices[unit_price][{i}]", row.get("unit_price", ip["price"]), minimum=0
                ),
                "description": row.get("description"),
            }
            date_from = integer(f"item_prices[date_from][{i}]", row.get("date_from", date))
            date_to = integer(f"item_prices[date_to][{i}]", row.get("date_to", date_from))
            if date_to < date_from:
                raise err.wrong_value(f"item_prices[date_to][{i}]", "is before date_from")
            line = self._line(price_id, item, date_from, date_to, None)
            line["customer_id"] = customer_id
            lines.append(line)
        for i, row in enumerate(p.get("charges", [])):
            if "amount" not in row:
                raise err.blank(f"charges[amount][{i}]")
            if not row.get("description"):
                raise err.blank(f"charges[description][{i}]")
            amount = integer(f"charges[amount][{i}]", row["amount"], minimum=1)
            lines.append(
                {
                    "id": self._new_id("li_"),
                    "object": "line_item",
                    "date_from": date,
                    "date_to": date,
                    "unit_amount": amount,
                    "quantity": 1,
                    "amount": amount,
                    "pricing_model": "flat_fee",
                    "is_taxed": False,
                    "tax_amount": 0,
                    "discount_amount": 0,
                    "item_level_discount_amount": 0,
                    "description": row["description"],
                    "entity_type": "adhoc",
                    "customer_id": customer_id,
                }
            )
        if not lines:
            raise err.blank("item_prices[item_price_id][0]")
        return self._new_invoice(
            customer_id=customer_id,
            subscription_id=None,
            currency=currency,
            date=date,
            net_term_days=integer(
                "net_term_days", p.get("net_term_days", customer["net_term_days"]), minimum=0
            ),
            auto_collection=_enum(
                "auto_collection",
                p.get("auto_collection", customer["auto_collection"]),
                ("on", "off"),
            ),
            lines=lines,
            pending=boolean("create_pending_invoice", p.get("create_pending_invoice", "false")),
            first=False,
            po_number=p.get("po_number"),
        )

    def close_invoice(self, id: str) -> dict[str, Any]:
        invoice = self.get("invoices", id, "Invoice")
        if invoice["status"] != "pending":
            raise err.invalid_state(
                f"Invoice {id} is {invoice['status']}; only pending invoices can be closed"
            )
        self._close(invoice)
        return invoice

    def void_invoice(self, id: str) -> dict[str, Any]:
        invoice = self.get("invoices", id, "Invoice")
        if invoice["status"] in ("voided", "paid"):
            raise err.invalid_state(f"Invoice {id} is {invoice['status']} and cannot be voided")
        invoice["status"] = "voided"
        invoice["voided_at"] = self.now()
        invoice["amount_due"] = 0
        self._touch(invoice)
        return invoice

    def send_email(self, id: str) -> list[dict[str, Any]]:
        invoice = self.get("invoices", id, "Invoice")
        if invoice["status"] == "pending":
            raise err.invalid_state(f"Invoice {id} is pending; close it before e-mailing it")
        customer = self.data["customers"][invoice["customer_id"]]
        if not customer.get("email"):
            raise err.invalid_state(f"Customer {customer['id']} has no e-mail address")
        log = {
            "id": self._new_id("el_"),
            "object": "email_log",
            "template_name": "invoice_notification",
            "from_address": "billing@sandbox.chargebee.example",
            "to_address": customer["email"],
            "subject": f"Invoice #{invoice['id']}",
            "status": "sent",
            "sent_on": self.now(),
            "customer_id": customer["id"],
            "site_id": "sandbox",
            "_invoice_id": invoice["id"],
        }
        self.data["email_logs"].append(log)
        return [log]

    # --- lists ----------------------------------------------------------------------------

    def entity(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        """What the API shows of an object: the internal ``_`` fields left out."""
        return {k: v for k, v in obj.items() if not k.startswith("_")}

    def list_objects(
        self,
        kind: str,
        objects: list[dict[str, Any]],
        p: dict[str, Any],
        filters: dict[str, str],
        sorts: tuple[str, ...],
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Filter, sort and page; ``filters`` maps a parameter to its filter kind."""
        reserved = {"limit", "offset", "sort_by", "include_deleted"}
        for name in p:
            if name not in reserved and name not in filters:
                raise err.wrong_value(name, "is not a filter of this list")
        include_deleted = boolean("include_deleted", p.get("include_deleted", "false"))
        rows = [o for o in objects if include_deleted or not o.get("deleted")]
        for name, kind_ in filters.items():
            if name in p:
                rows = [o for o in rows if _matches(name, kind_, o.get(name), p[name])]
        sort = p.get("sort_by")
        # Newest first by default, by the first time stamp the resource has.
        key = next(k for k in ("created_at", "date", "updated_at", *sorts) if k in sorts)
        descending = True
        if sort is not None:
            if not isinstance(sort, dict) or len(sort) != 1:
                raise err.wrong_value("sort_by", "use sort_by[asc] or sort_by[desc]")
            ((direction, key),) = sort.items()
            if direction not in ("asc", "desc") or key not in sorts:
                raise err.wrong_value(f"sort_by[{direction}]", f"cannot sort by {key}")
            descending = direction == "desc"
        rows.sort(key=lambda o: (o.get(key) or 0, str(o.get("id"))), reverse=descending)
        limit = integer("limit", p.get("limit", 10), minimum=1)
        if limit > 100:
            raise err.wrong_value("limit", "cannot be more than 100")
        start = 0
        if "offset" in p:
            try:
                start = int(list_value("offset", p["offset"])[0])
            except (IndexError, ValueError) as exc:
                raise err.wrong_value("offset", "invalid offset") from exc
        page = rows[start : start + limit]
        more = start + limit < len(rows)
        return page, (f'["{start + limit}"]' if more else None)


def _matches(name: str, kind: str, value: Any, spec: Any) -> bool:
    if not isinstance(spec, dict) or len(spec) != 1:
        raise err.wrong_value(name, "use a filter operator such as [is]")
    ((op, operand),) = spec.items()
    text = "" if value is None else str(value)
    if kind in ("string", "enum"):
        if op == "is":
            return text == operand
        if op == "is_not":
            return text != operand
        if op == "in":
            return text in list_value(f"{name}[in]", operand)
        if op == "not_in":
            return text not in list_value(f"{name}[not_in]", operand)
        if op == "starts_with" and kind == "string":
            return text.startswith(operand)
        if op == "is_present":
            return (value is not None) == boolean(f"{name}[is_present]", operand)
    if kind == "boolean" and op == "is":
        return text.lower() == str(operand).lower()
    if kind == "timestamp":
        number = int(value or 0)
        if op == "after":
            return number > integer(f"{name}[after]", operand)
        if op == "before":
            return number < integer(f"{name}[before]", operand)
        if op == "on":
            return number == integer(f"{name}[on]", operand)
        if op == "between":
            low, high = (int(x) for x in list_value(f"{name}[between]", operand))
            return low <= number <= high
    raise err.wrong_value(f"{name}[{op}]", "unsupported filter operator")
