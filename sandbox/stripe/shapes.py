"""Builders for Stripe objects with every field of Stripe's own fixtures (fixtures3.json).

Each builder returns the complete object, with ``null`` where Stripe has nothing to say, so the
SDK sees the same attribute set as from api.stripe.com.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sandbox.stripe.billing import money

ACCOUNT_NAME = "QTC Sandbox"
# Stripe writes line descriptions as "50 <multiplication sign> Platform Pro (at $1,296.00 / year)".
TIMES = " \u00d7 "


def list_object(data: list[dict[str, Any]], url: str, has_more: bool = False) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


def address(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    keys = ("city", "country", "line1", "line2", "postal_code", "state")
    return {k: (value.get(k) or None) for k in keys}


def customer(cid: str, created: int, p: dict[str, Any], invoice_prefix: str) -> dict[str, Any]:
    return {
        "address": address(p.get("address")),
        "balance": p.get("balance", 0),
        "created": created,
        "currency": None,
        "default_source": None,
        "delinquent": False,
        "description": p.get("description") or None,
        "discount": None,
        "email": p.get("email") or None,
        "id": cid,
        "invoice_prefix": invoice_prefix,
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": {},
        "name": p.get("name") or None,
        "next_invoice_sequence": p.get("next_invoice_sequence", 1),
        "object": "customer",
        "phone": p.get("phone") or None,
        "preferred_locales": list(p.get("preferred_locales") or []),
        "shipping": None,
        "tax_exempt": p.get("tax_exempt") or "none",
        "test_clock": None,
    }


def tax_id(
    tid: str, created: int, customer_id: str, type_: str, value: str, country: str | None
) -> dict[str, Any]:
    return {
        "country": country,
        "created": created,
        "customer": customer_id,
        "id": tid,
        "livemode": False,
        "object": "tax_id",
        "owner": {"customer": customer_id, "type": "customer", "customer_account": None},
        "type": type_,
        "value": value,
        "verification": {"status": "unavailable", "verified_address": None, "verified_name": None},
        "customer_account": None,
    }


def product(pid: str, created: int, p: dict[str, Any]) -> dict[str, Any]:
    return {
        "active": p.get("active", True),
        "created": created,
        "default_price": None,
        "description": p.get("description") or None,
        "id": pid,
        "images": list(p.get("images") or []),
        "livemode": False,
        "marketing_features": [],
        "metadata": {},
        "name": p["name"],
        "object": "product",
        "package_dimensions": None,
        "shippable": p.get("shippable"),
        "statement_descriptor": p.get("statement_descriptor") or None,
        "tax_code": p.get("tax_code") or None,
        "unit_label": p.get("unit_label") or None,
        "updated": created,
        "url": p.get("url") or None,
        "type": "service",
    }


def price(
    pid: str,
    created: int,
    *,
    product_id: str,
    currency: str,
    unit_amount_decimal: str,
    recurring: dict[str, Any] | None,
    active: bool = True,
    lookup_key: str | None = None,
    nickname: str | None = None,
    tax_behavior: str = "unspecified",
) -> dict[str, Any]:
    exact = Decimal(unit_amount_decimal)
    whole = int(exact) if exact == exact.to_integral_value() else None
    return {
        "active": active,
        "billing_scheme": "per_unit",
        "created": created,
        "currency": currency,
        "custom_unit_amount": None,
        "id": pid,
        "livemode": False,
        "lookup_key": lookup_key,
        "metadata": {},
        "nickname": nickname,
        "object": "price",
        "product": product_id,
        "recurring": None
        if recurring is None
        else {
            "interval": recurring["interval"],
            "interval_count": recurring.get("interval_count", 1),
            "meter": None,
            "usage_type": recurring.get("usage_type", "licensed"),
            "trial_period_days": None,
        },
        "tax_behavior": tax_behavior,
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "one_time" if recurring is None else "recurring",
        "unit_amount": whole,
        "unit_amount_decimal": unit_amount_decimal,
    }


def plan(price_obj: dict[str, Any]) -> dict[str, Any]:
    """The legacy ``plan`` view of a recurring price that subscription items still carry."""
    recurring = price_obj["recurring"] or {}
    return {
        "active": price_obj["active"],
        "amount": price_obj["unit_amount"],
        "amount_decimal": price_obj["unit_amount_decimal"],
        "billing_scheme": "per_unit",
        "created": price_obj["created"],
        "currency": price_obj["currency"],
        "id": price_obj["id"],
        "interval": recurring.get("interval"),
        "interval_count": recurring.get("interval_count"),
        "livemode": False,
        "metadata": dict(price_obj["metadata"]),
        "meter": None,
        "nickname": price_obj["nickname"],
        "object": "plan",
        "product": price_obj["product"],
        "tiers_mode": None,
        "transform_usage": None,
        "trial_period_days": None,
        "usage_type": recurring.get("usage_type", "licensed"),
    }


def subscription_item(
    si_id: str,
    created: int,
    sub_id: str,
    price_obj: dict[str, Any],
    quantity: int,
    metadata: dict[str, str],
    period: tuple[int, int],
) -> dict[str, Any]:
    return {
        "created": created,
        "discounts": [],
        "id": si_id,
        "metadata": dict(metadata),
        "object": "subscription_item",
        "price": price_obj,
        "quantity": quantity,
        "subscription": sub_id,
        "tax_rates": [],
        "plan": plan(price_obj),
        "current_period_end": period[1],
        "current_period_start": period[0],
        "billing_thresholds": None,
    }


def subscription(
    sub_id: str,
    created: int,
    *,
    customer_id: str,
    currency: str,
    start: int,
    anchor: int,
    collection_method: str,
    days_until_due: int | None,
    items: list[dict[str, Any]],
    metadata: dict[str, str],
    description: str | None,
    schedule_id: str | None,
    status: str,
) -> dict[str, Any]:
    return {
        "application": None,
        "application_fee_percent": None,
        "automatic_tax": {"enabled": False, "liability": None, "disabled_reason": None},
        "billing_cycle_anchor": anchor,
        "billing_cycle_anchor_config": None,
        "cancel_at": None,
        "canceled_at": None,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
        "collection_method": collection_method,
        "created": created,
        "currency": currency,
        "customer": customer_id,
        "days_until_due": days_until_due,
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "description": description,
        "discounts": [],
        "ended_at": None,
        "id": sub_id,
        "invoice_settings": {
            "account_tax_ids": None,
            "issuer": {"type": "self"},
            "custom_fields": None,
            "description": None,
            "footer": None,
        },
        "items": list_object(items, f"/v1/subscription_items?subscription={sub_id}"),
        "latest_invoice": None,
        "livemode": False,
        "metadata": dict(metadata),
        "next_pending_invoice_item_invoice": None,
        "object": "subscription",
        "on_behalf_of": None,
        "pause_collection": None,
        "payment_settings": {
            "payment_method_options": None,
            "payment_method_types": None,
            "save_default_payment_method": "off",
        },
        "pending_invoice_item_interval": None,
        "pending_setup_intent": None,
        "pending_update": None,
        "schedule": schedule_id,
        "start_date": start,
        "status": status,
        "test_clock": None,
        "transfer_data": None,
        "trial_end": None,
        "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "trial_start": None,
        "cancel_at_period_end": False,
        "billing_thresholds": None,
        "billing_mode": {"type": "classic", "flexible": None},
        "customer_account": None,
        "managed_payments": {"enabled": False},
        "billing_schedules": [],
    }


def invoice_settings(days_until_due: int | None) -> dict[str, Any]:
    return {
        "account_tax_ids": None,
        "days_until_due": days_until_due,
        "issuer": {"type": "self"},
        "custom_fields": None,
        "description": None,
        "footer": None,
    }


def schedule_default_settings(
    collection_method: str | None, days_until_due: int | None, billing_cycle_anchor: str
) -> dict[str, Any]:
    return {
        "application_fee_percent": None,
        "automatic_tax": {"enabled": False, "liability": None, "disabled_reason": None},
        "billing_cycle_anchor": billing_cycle_anchor,
        "collection_method": collection_method or "charge_automatically",
        "default_payment_method": None,
        "description": None,
        "invoice_settings": invoice_settings(days_until_due),
        "on_behalf_of": None,
        "transfer_data": None,
        "billing_thresholds": None,
    }


def phase_item(
    price_obj: dict[str, Any], quantity: int, metadata: dict[str, str]
) -> dict[str, Any]:
    return {
        "discounts": [],
        "metadata": dict(metadata),
        "price": price_obj["id"],
        "quantity": quantity,
        "tax_rates": [],
        "plan": plan(price_obj),
        "billing_thresholds": None,
    }


def phase_add_invoice_item(
    price_id: str, quantity: int, metadata: dict[str, str]
) -> dict[str, Any]:
    return {
        "discounts": [],
        "metadata": dict(metadata),
        "period": {
            "end": {"timestamp": None, "type": "min_item_period_end"},
            "start": {"timestamp": None, "type": "max_item_period_start"},
        },
        "price": price_id,
        "quantity": quantity,
        "tax_rates": [],
    }


def phase(
    *,
    start: int,
    end: int,
    currency: str,
    items: list[dict[str, Any]],
    add_invoice_items: list[dict[str, Any]],
    metadata: dict[str, str],
    collection_method: str | None,
    days_until_due: int | None,
    proration_behavior: str,
    description: str | None,
    billing_cycle_anchor: str | None,
) -> dict[str, Any]:
    return {
        "add_invoice_items": add_invoice_items,
        "application_fee_percent": None,
        "billing_cycle_anchor": billing_cycle_anchor,
        "collection_method": collection_method,
        "currency": currency,
        "default_payment_method": None,
        "default_tax_rates": [],
        "description": description,
        "discounts": [],
        "end_date": end,
        "invoice_settings": None if days_until_due is None else invoice_settings(days_until_due),
        "items": items,
        "metadata": dict(metadata),
        "on_behalf_of": None,
        "proration_behavior": proration_behavior,
        "start_date": start,
        "transfer_data": None,
        "trial_end": None,
        "billing_thresholds": None,
    }


def schedule(
    sched_id: str,
    created: int,
    *,
    customer_id: str,
    default_settings: dict[str, Any],
    end_behavior: str,
    metadata: dict[str, str],
    phases: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "application": None,
        "canceled_at": None,
        "completed_at": None,
        "created": created,
        "current_phase": None,
        "customer": customer_id,
        "default_settings": default_settings,
        "end_behavior": end_behavior,
        "id": sched_id,
        "livemode": False,
        "metadata": dict(metadata),
        "object": "subscription_schedule",
        "pause_schedules": [],
        "phases": phases,
        "released_at": None,
        "released_subscription": None,
        "status": "not_started",
        "subscription": None,
        "test_clock": None,
        "billing_mode": {"type": "classic", "flexible": None},
        "customer_account": None,
    }


def invoice(
    inv_id: str,
    created: int,
    *,
    customer_obj: dict[str, Any],
    customer_tax_ids: list[dict[str, Any]],
    currency: str,
    collection_method: str,
    days_until_due: int | None,
    auto_advance: bool,
    billing_reason: str,
    subscription_id: str | None,
    subscription_metadata: dict[str, str] | None,
    period: tuple[int, int],
    metadata: dict[str, str],
    description: str | None,
) -> dict[str, Any]:
    due = created + days_until_due * 86400 if days_until_due is not None else None
    return {
        "account_country": "US",
        "account_name": ACCOUNT_NAME,
        "account_tax_ids": None,
        "amount_due": 0,
        "amount_paid": 0,
        "amount_remaining": 0,
        "amount_shipping": 0,
        "application": None,
        "attempt_count": 0,
        "attempted": False,
        "auto_advance": auto_advance,
        "automatic_tax": {
            "enabled": False,
            "liability": None,
            "status": None,
            "disabled_reason": None,
            "provider": None,
        },
        "billing_reason": billing_reason,
        "collection_method": collection_method,
        "created": created,
        "currency": currency,
        "custom_fields": None,
        "customer": customer_obj["id"],
        "customer_address": customer_obj["address"],
        "customer_email": customer_obj["email"],
        "customer_name": customer_obj["name"],
        "customer_phone": customer_obj["phone"],
        "customer_shipping": customer_obj["shipping"],
        "customer_tax_exempt": customer_obj["tax_exempt"],
        "customer_tax_ids": customer_tax_ids,
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "description": description,
        "discounts": [],
        "due_date": due,
        "effective_at": None,
        "ending_balance": None,
        "footer": None,
        "from_invoice": None,
        "hosted_invoice_url": None,
        "id": inv_id,
        "invoice_pdf": None,
        "issuer": {"type": "self"},
        "last_finalization_error": None,
        "latest_revision": None,
        "lines": list_object([], f"/v1/invoices/{inv_id}/lines"),
        "livemode": False,
        "metadata": dict(metadata),
        "next_payment_attempt": None,
        "number": None,
        "object": "invoice",
        "on_behalf_of": None,
        "payment_settings": {
            "default_mandate": None,
            "payment_method_options": None,
            "payment_method_types": None,
        },
        "period_end": period[1],
        "period_start": period[0],
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": None,
        "rendering": None,
        "shipping_cost": None,
        "shipping_details": None,
        "starting_balance": 0,
        "statement_descriptor": None,
        "status": "draft",
        "status_transitions": {
            "finalized_at": None,
            "marked_uncollectible_at": None,
            "paid_at": None,
            "voided_at": None,
        },
        "subscription": subscription_id,
        "subtotal": 0,
        "subtotal_excluding_tax": 0,
        "test_clock": None,
        "total": 0,
        "total_discount_amounts": [],
        "total_excluding_tax": 0,
        "webhooks_delivered_at": created,
        "automatically_finalizes_at": created + 3600 if auto_advance else None,
        "total_pretax_credit_amounts": [],
        "total_taxes": [],
        "amount_overpaid": 0,
        "parent": None
        if subscription_id is None
        else {
            "quote_details": None,
            "subscription_details": {
                "metadata": dict(subscription_metadata or {}),
                "subscription": subscription_id,
            },
            "type": "subscription_details",
        },
        "customer_account": None,
    }


def pricing(price_obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "price_details": {"price": price_obj["id"], "product": price_obj["product"]},
        "type": "price_details",
        "unit_amount_decimal": price_obj["unit_amount_decimal"],
    }


def invoice_item(
    ii_id: str,
    created: int,
    *,
    customer_id: str,
    price_obj: dict[str, Any] | None,
    currency: str,
    amount: int,
    quantity: int,
    description: str | None,
    period: tuple[int, int],
    subscription_id: str | None,
    invoice_id: str | None,
    metadata: dict[str, str],
) -> dict[str, Any]:
    return {
        "amount": amount,
        "currency": currency,
        "customer": customer_id,
        "date": created,
        "description": description,
        "discountable": True,
        "discounts": [],
        "id": ii_id,
        "invoice": invoice_id,
        "livemode": False,
        "metadata": dict(metadata),
        "object": "invoiceitem",
        "period": {"end": period[1], "start": period[0]},
        "proration": False,
        "quantity": quantity,
        "tax_rates": [],
        "test_clock": None,
        "parent": None
        if subscription_id is None
        else {
            "subscription_details": {"subscription": subscription_id},
            "type": "subscription_details",
        },
        "pricing": None if price_obj is None else pricing(price_obj),
        "net_amount": amount,
        "customer_account": None,
        "quantity_decimal": str(quantity),
    }


def _line(
    il_id: str,
    *,
    invoice_id: str,
    amount: int,
    currency: str,
    description: str | None,
    period: tuple[int, int],
    quantity: int,
    subscription_id: str | None,
    metadata: dict[str, str],
    parent: dict[str, Any],
    price_obj: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "amount": amount,
        "currency": currency,
        "description": description,
        "discount_amounts": [],
        "discountable": True,
        "discounts": [],
        "id": il_id,
        "invoice": invoice_id,
        "livemode": False,
        "metadata": dict(metadata),
        "object": "line_item",
        "period": {"end": period[1], "start": period[0]},
        "quantity": quantity,
        "subscription": subscription_id,
        "pretax_credit_amounts": [],
        "taxes": [],
        "parent": parent,
        "pricing": None if price_obj is None else pricing(price_obj),
        "subtotal": amount,
        "quantity_decimal": str(quantity),
    }


def subscription_line(
    il_id: str,
    *,
    invoice_id: str,
    item: dict[str, Any],
    amount: int,
    period: tuple[int, int],
    description: str,
    proration: bool,
) -> dict[str, Any]:
    return _line(
        il_id,
        invoice_id=invoice_id,
        amount=amount,
        currency=item["price"]["currency"],
        description=description,
        period=period,
        quantity=item["quantity"],
        subscription_id=item["subscription"],
        metadata=item["metadata"],
        price_obj=item["price"],
        parent={
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": None,
                "proration": proration,
                "proration_details": {"credited_items": None},
                "subscription": item["subscription"],
                "subscription_item": item["id"],
            },
            "type": "subscription_item_details",
        },
    )


def invoice_item_line(
    il_id: str, *, invoice_id: str, ii: dict[str, Any], price_obj: dict[str, Any] | None
) -> dict[str, Any]:
    sub_id = (ii["parent"] or {}).get("subscription_details", {}).get("subscription")
    return _line(
        il_id,
        invoice_id=invoice_id,
        amount=ii["amount"],
        currency=ii["currency"],
        description=ii["description"],
        period=(ii["period"]["start"], ii["period"]["end"]),
        quantity=ii["quantity"],
        subscription_id=sub_id,
        metadata=ii["metadata"],
        price_obj=price_obj,
        parent={
            "invoice_item_details": {
                "invoice_item": ii["id"],
                "proration": ii["proration"],
                "proration_details": {"credited_items": None},
                "subscription": sub_id,
            },
            "subscription_item_details": None,
            "type": "invoice_item_details",
        },
    )


def recurring_description(quantity: int, product_name: str, price_obj: dict[str, Any]) -> str:
    recurring = price_obj["recurring"] or {}
    count = recurring.get("interval_count", 1)
    every = (
        recurring.get("interval", "")
        if count == 1
        else f"every {count} {recurring.get('interval')}s"
    )
    unit = money(Decimal(price_obj["unit_amount_decimal"]), price_obj["currency"])
    return f"{quantity}{TIMES}{product_name} (at {unit} / {every})"


def event(
    evt_id: str,
    created: int,
    type_: str,
    obj: dict[str, Any],
    api_version: str,
    request_id: str | None,
    idempotency_key: str | None,
) -> dict[str, Any]:
    return {
        "api_version": api_version,
        "created": created,
        "data": {"object": obj},
        "id": evt_id,
        "livemode": False,
        "object": "event",
        "pending_webhooks": 0,
        "request": {"id": request_id, "idempotency_key": idempotency_key},
        "type": type_,
    }
