"""CPQ: a bad quote cannot leave the building (docs/architecture.md, sections 2 and 3).

``parse_quote`` turns untrusted input into a ``Quote`` or rejects it with ``invalid_field``
violations. ``price_quote`` runs every business rule against the catalog, reports all violations at
once, attaches required SKUs, flags discounts that need the deal desk, and prices the full invoice
schedule through ``qtc.pricing`` (the same code the workflow uses to re-date at signature).

Choices the rules leave open:

- A quantity below 1 is ``invalid_field`` (it is not a quantity at all); a whole quantity outside
  the SKU's ``min_quantity``..``max_quantity`` is ``quantity_out_of_range``.
- A quote with only one-time lines is a services order: one invoice, no subscription. Its term,
  billing frequency and uplift are still checked against the policy (the term dates it).
- A SKU without a price in the quote currency is ``currency_not_supported`` on its line's ``sku``;
  so is a required SKU that cannot be sold in that currency (reported on the line requiring it).
- Two lines with the same SKU: the second is ``duplicate_sku``, and every other rule still runs
  on it (quantity, discount, currency, requirements, exclusions), so one rejection lists
  everything to fix.
  Mutually exclusive SKUs are reported once, on the later line, whichever of the two names the
  exclusion.
- JSON objects with a repeated key, ``NaN``/``Infinity``, input over ``MAX_QUOTE_BYTES``, non-UTF-8
  bytes and JSON that is not an object are ``invalid_field`` on the whole document (pointer
  ``""``). Numbers with a fraction are read as ``Decimal``, never as ``float``.
- Structural problems are reported together; business rules run only on a quote that parses,
  because they need its values (an unknown SKU cannot be checked against a malformed currency).
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from qtc.dates import as_utc, utc_date
from qtc.errors import QuoteRejected
from qtc.models import (
    PERIOD_MONTHS,
    Adjustment,
    ApprovalNeeded,
    Catalog,
    FeatureValue,
    Policy,
    PricedLine,
    PricedQuote,
    Quote,
    Sku,
    Violation,
)
from qtc.pricing import Terms, price_schedule

MAX_QUOTE_BYTES = 1_000_000
"""Largest quote document accepted; the HTTP API applies the same limit to request bodies."""

_ADVERB = {"monthly": "monthly", "quarterly": "quarterly", "annual": "annually"}
_PATTERN_HINTS = {
    "country": "must be a two-letter ISO country code in capitals, such as US",
    "currency": "must be a three-letter lowercase ISO currency code, such as usd",
    "opportunity_id": "must be 1 to 64 letters, digits, '_' or '-'",
    "billing_email": "must be an email address",
    "email": "must be an email address",
}


def parse_quote(raw: bytes | str | dict[str, Any]) -> Quote:
    """Validate untrusted input as a ``Quote``.

    Raises:
        QuoteRejected: with one ``invalid_field`` violation per problem, each pointing at the
            offending field (``/lines/2/quantity``, ``/account/address/country``, ``""`` for the
            document itself).
    """
    data: object = raw if isinstance(raw, dict) else _decode_json(raw)
    if not isinstance(data, dict):
        raise QuoteRejected([_invalid("", "a quote must be a JSON object")])
    try:
        return Quote.model_validate(data)
    except ValidationError as exc:
        raise QuoteRejected(_violations_from(exc.errors(), data)) from exc


def price_quote(
    quote: Quote | bytes | str | dict[str, Any], catalog: Catalog, signed_at: datetime
) -> PricedQuote:
    """Check every CPQ rule and price the quote as if signed at ``signed_at``.

    ``signed_at`` should be timezone-aware; a naive value is taken as UTC. The contract starts on
    its UTC date (or on a later requested start).

    Raises:
        QuoteRejected: listing every violation found, structural or business.
    """
    parsed = quote if isinstance(quote, Quote) else parse_quote(quote)
    signed_at = as_utc(signed_at)
    policy = catalog.policy
    uplift = (
        parsed.uplift_percent
        if parsed.uplift_percent is not None
        else policy.default_uplift_percent
    )
    violations = _policy_violations(parsed, policy, uplift, utc_date(signed_at))
    resolved = _resolve_lines(parsed, catalog, currency_sold=parsed.currency in policy.currencies)
    violations.extend(sorted(resolved.violations, key=_line_index))
    if violations:
        raise QuoteRejected(violations)

    terms = Terms(
        currency=parsed.currency,
        term_months=parsed.term_months,
        billing_frequency=parsed.billing_frequency,
        billing_anchor=parsed.billing_anchor,
        requested_start=parsed.start,
        uplift_percent=uplift,
    )
    lines = [line.priced(parsed.currency) for line in resolved.lines if not line.duplicate]
    try:
        schedule = price_schedule(lines, terms, signed_at)
    except (OverflowError, ValueError) as exc:
        # Only dates near year 9999 get here: the term would end past what a calendar date holds.
        pointer = "/start" if isinstance(parsed.start, date) else ""
        raise QuoteRejected(
            [_invalid(pointer, f"the contract term cannot be dated: {exc}")]
        ) from exc
    return PricedQuote(
        status="needs_approval" if resolved.approvals else "ok",
        quote_id=parsed.quote_id,
        opportunity_id=parsed.opportunity_id,
        currency=parsed.currency,
        signed_at=schedule.signed_at,
        start_date=schedule.start_date,
        term_start=schedule.term_start,
        term_end=schedule.term_end,
        term_months=parsed.term_months,
        billing_frequency=parsed.billing_frequency,
        billing_anchor=parsed.billing_anchor,
        payment_terms_days=parsed.payment_terms_days,
        uplift_percent=uplift,
        valid_until=parsed.valid_until,
        account=parsed.account,
        signer=parsed.signer,
        lines=schedule.lines,
        invoices=schedule.invoices,
        mrr_minor=schedule.mrr_minor,
        arr_minor=schedule.arr_minor,
        tcv_minor=schedule.tcv_minor,
        first_invoice_total_minor=schedule.first_invoice_total_minor,
        adjustments=resolved.adjustments,
        approvals_needed=resolved.approvals,
        requested_start=parsed.start,
    )


def priced_to_json(priced: PricedQuote) -> dict[str, Any]:
    """The public JSON of a priced quote: integer minor units, decimals as strings, no nulls.

    ``PricedQuote.model_validate(priced_to_json(p)) == p``.
    """
    return priced.model_dump(mode="json", exclude_none=True)


def violations_to_json(violations: Iterable[Violation]) -> dict[str, Any]:
    """``{"errors": [{"pointer", "code", "message"}, ...]}``, the body of a rejection."""
    return {"errors": [violation.model_dump(mode="json") for violation in violations]}


# --- business rules -----------------------------------------------------------------------


@dataclass
class _Line:
    """A line as CPQ resolves it: from the quote, or attached because another SKU requires it."""

    sku: Sku
    quantity: int
    discount: Decimal
    pointer: str  # where a problem with the line is reported; a requirer's line for auto-added
    auto_added: bool = False
    reason: str | None = None
    # A second line of a SKU: checked against every rule, never priced (the quote is rejected).
    duplicate: bool = False

    def priced(self, currency: str) -> PricedLine:
        return PricedLine(
            sku=self.sku.code,
            name=self.sku.name,
            kind=self.sku.kind,
            quantity=self.quantity,
            discount_percent=self.discount,
            list_price=self.sku.prices[currency],
            auto_added=self.auto_added,
            reason=self.reason,
            features=_features(self.sku, self.quantity),
        )


@dataclass
class _Resolved:
    lines: list[_Line]
    violations: list[Violation]
    adjustments: list[Adjustment]
    approvals: list[ApprovalNeeded]


def _policy_violations(
    quote: Quote, policy: Policy, uplift: Decimal, signed_on: date
) -> list[Violation]:
    found: list[Violation] = []
    if quote.currency not in policy.currencies:
        found.append(
            Violation(
                pointer="/currency",
                code="currency_not_supported",
                message=f"quotes are not sold in {quote.currency}; "
                f"allowed: {', '.join(policy.currencies)}",
            )
        )
    if quote.term_months not in policy.term_months:
        found.append(
            Violation(
                pointer="/term_months",
                code="term_not_allowed",
                message=f"a term of {quote.term_months} months is not offered; allowed: "
                f"{', '.join(str(m) for m in policy.term_months)} months",
            )
        )
    if quote.billing_frequency not in policy.billing_frequencies:
        found.append(
            Violation(
                pointer="/billing_frequency",
                code="frequency_not_allowed",
                message=f"{quote.billing_frequency} billing is not offered; allowed: "
                f"{', '.join(policy.billing_frequencies)}",
            )
        )
    period = PERIOD_MONTHS[quote.billing_frequency]
    if quote.term_months > 0 and quote.term_months % period:
        found.append(
            Violation(
                pointer="/term_months",
                code="term_not_multiple_of_period",
                message=f"a term of {quote.term_months} months cannot be billed "
                f"{_ADVERB[quote.billing_frequency]}: it is not a whole number of "
                f"{period}-month periods",
            )
        )
    if quote.payment_terms_days not in policy.payment_terms_days:
        found.append(
            Violation(
                pointer="/payment_terms_days",
                code="payment_terms_not_allowed",
                message=f"payment terms of {quote.payment_terms_days} days are not offered; "
                f"allowed: {', '.join(str(d) for d in policy.payment_terms_days)} days",
            )
        )
    if uplift > policy.max_uplift_percent:
        found.append(
            Violation(
                pointer="/uplift_percent",
                code="uplift_out_of_policy",
                message=f"a yearly uplift of {uplift}% is above the policy maximum of "
                f"{policy.max_uplift_percent}%",
            )
        )
    if signed_on > quote.valid_until:
        found.append(
            Violation(
                pointer="/valid_until",
                code="quote_expired",
                message=f"the quote was valid until {quote.valid_until} and cannot be signed "
                f"on {signed_on}",
            )
        )
    return found


def _resolve_lines(quote: Quote, catalog: Catalog, *, currency_sold: bool) -> _Resolved:
    result = _Resolved(lines=[], violations=[], adjustments=[], approvals=[])
    currency = quote.currency
    first_line: dict[str, int] = {}
    for i, quote_line in enumerate(quote.lines):
        pointer = f"/lines/{i}"
        sku = catalog.sku(quote_line.sku)
        if sku is None:
            result.violations.append(
                Violation(
                    pointer=f"{pointer}/sku",
                    code="unknown_sku",
                    message=f"{quote_line.sku} is not in the catalog",
                )
            )
            continue
        duplicate = sku.code in first_line
        if duplicate:
            result.violations.append(
                Violation(
                    pointer=f"{pointer}/sku",
                    code="duplicate_sku",
                    message=f"{sku.code} is already on line {first_line[sku.code]}; "
                    "put its whole quantity on one line",
                )
            )
        else:
            first_line[sku.code] = i
        if not sku.min_quantity <= quote_line.quantity <= sku.max_quantity:
            result.violations.append(
                Violation(
                    pointer=f"{pointer}/quantity",
                    code="quantity_out_of_range",
                    message=f"{sku.code} is sold in quantities of {sku.min_quantity} to "
                    f"{sku.max_quantity} {sku.unit}s; the quote has {quote_line.quantity}",
                )
            )
        if currency_sold and currency not in sku.prices:
            result.violations.append(
                Violation(
                    pointer=f"{pointer}/sku",
                    code="currency_not_supported",
                    message=f"{sku.code} has no {currency} price",
                )
            )
        discount = quote_line.discount_percent
        if discount > sku.hard_max_discount_percent:
            result.violations.append(
                Violation(
                    pointer=f"{pointer}/discount_percent",
                    code="discount_above_hard_max",
                    message=f"{discount}% off {sku.code} is above its hard maximum of "
                    f"{sku.hard_max_discount_percent}%",
                )
            )
        elif discount > sku.max_discount_percent:
            result.approvals.append(
                ApprovalNeeded(
                    pointer=f"{pointer}/discount_percent",
                    sku=sku.code,
                    discount_percent=discount,
                    max_discount_percent=sku.max_discount_percent,
                    message=f"{discount}% off {sku.code} is above the {sku.max_discount_percent}% "
                    "a sales rep may give; the deal desk must approve it",
                )
            )
        result.lines.append(
            _Line(
                sku=sku,
                quantity=quote_line.quantity,
                discount=discount,
                pointer=pointer,
                duplicate=duplicate,
            )
        )

    _attach_required(result, catalog, currency, currency_sold=currency_sold)
    _check_exclusions(result)
    return result


def _attach_required(
    result: _Resolved, catalog: Catalog, currency: str, *, currency_sold: bool
) -> None:
    """Add every SKU a line requires and the quote lacks, transitively, in the order required."""
    present = {line.sku.code for line in result.lines}
    # Appending while iterating walks requirements of auto-added SKUs too.
    for line in result.lines:
        for requirement in line.sku.requires:
            if requirement.sku in present:
                continue
            required = catalog.sku(requirement.sku)
            if required is None:
                result.violations.append(
                    Violation(
                        pointer=f"{line.pointer}/sku",
                        code="unknown_sku",
                        message=f"{line.sku.code} requires {requirement.sku}, "
                        "which is not in the catalog",
                    )
                )
                continue
            if currency_sold and currency not in required.prices:
                result.violations.append(
                    Violation(
                        pointer=f"{line.pointer}/sku",
                        code="currency_not_supported",
                        message=f"{line.sku.code} requires {required.code}, "
                        f"which has no {currency} price",
                    )
                )
                continue
            present.add(required.code)
            result.lines.append(
                _Line(
                    sku=required,
                    quantity=requirement.quantity,
                    discount=Decimal(0),
                    pointer=line.pointer,
                    auto_added=True,
                    reason=f"required by {line.sku.code}",
                )
            )
            result.adjustments.append(
                Adjustment(rule="requires", sku=required.code, because=line.sku.code)
            )


def _check_exclusions(result: _Resolved) -> None:
    for j, later in enumerate(result.lines):
        for earlier in result.lines[:j]:
            if earlier.sku.code == later.sku.code:
                continue  # a repeated SKU is a duplicate, not an exclusion
            if later.sku.code in earlier.sku.excludes or earlier.sku.code in later.sku.excludes:
                what = f"{later.sku.code} ({later.reason})" if later.auto_added else later.sku.code
                result.violations.append(
                    Violation(
                        pointer=f"{later.pointer}/sku",
                        code="excluded_sku",
                        message=f"{what} cannot be sold together with {earlier.sku.code}",
                    )
                )


def _features(sku: Sku, quantity: int) -> dict[str, FeatureValue]:
    """Feature limits written ``"quantity"`` take the line's quantity (seats = 50)."""
    return {
        name: quantity if value == "quantity" else value for name, value in sku.features.items()
    }


def _line_index(violation: Violation) -> int:
    """Line problems are listed in line order, whichever rule found them; ``/lines`` first."""
    parts = violation.pointer.split("/")
    return int(parts[2]) if len(parts) > 2 else -1


# --- parsing ------------------------------------------------------------------------------


class _Malformed(ValueError):
    """A JSON document that parses but that a quote must never be (duplicate keys, NaN)."""


def _decode_json(raw: bytes | str) -> object:
    if isinstance(raw, str):
        if len(raw) > MAX_QUOTE_BYTES:
            raise QuoteRejected([_too_large(len(raw.encode("utf-8", "replace")))])
        try:
            raw = raw.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise QuoteRejected(
                [_invalid("", f"the quote is not valid Unicode text (offset {exc.start})")]
            ) from exc
    if len(raw) > MAX_QUOTE_BYTES:
        raise QuoteRejected([_too_large(len(raw))])
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8) :]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise QuoteRejected(
            [
                _invalid(
                    "",
                    f"the quote is not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset "
                    f"{exc.start} cannot be decoded",
                )
            ]
        ) from exc
    try:
        return json.loads(
            text,
            parse_float=Decimal,
            parse_constant=_reject_constant,
            object_pairs_hook=_object_without_duplicates,
        )
    except _Malformed as exc:
        raise QuoteRejected([_invalid("", f"the quote is not acceptable JSON: {exc}")]) from exc
    except json.JSONDecodeError as exc:
        raise QuoteRejected(
            [
                _invalid(
                    "",
                    f"the quote is not valid JSON: {exc.msg} at line {exc.lineno} "
                    f"column {exc.colno}",
                )
            ]
        ) from exc
    except ValueError as exc:
        # e.g. an integer longer than Python's 4300-digit conversion limit
        raise QuoteRejected([_invalid("", f"the quote is not acceptable JSON: {exc}")]) from exc
    except RecursionError as exc:
        raise QuoteRejected([_invalid("", "the quote is nested too deeply")]) from exc


def _too_large(size: int) -> Violation:
    return _invalid("", f"the quote is {size} bytes; the limit is {MAX_QUOTE_BYTES} bytes")


def _reject_constant(name: str) -> object:
    raise _Malformed(f"{name} is not a number")


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            # json keeps the last value silently; a second "discount_percent" could hide a term.
            raise _Malformed(f'the key "{key}" appears twice in one object')
        obj[key] = value
    return obj


def _invalid(pointer: str, message: str) -> Violation:
    return Violation(pointer=pointer, code="invalid_field", message=message)


def _violations_from(errors: list[ErrorDetails], data: object) -> list[Violation]:
    found: dict[str, Violation] = {}
    for err in errors:
        path = _data_path(err["loc"], data)
        pointer = "".join(f"/{_escape(part)}" for part in path)
        if pointer in found:
            continue  # one sentence per field is enough, even if several checks failed
        found[pointer] = _invalid(pointer, f"{_label(path)} {_sentence(err, path)}")
    return list(found.values())


def _data_path(loc: tuple[int | str, ...], data: object) -> list[int | str]:
    """The part of a pydantic error location that names a place in the document.

    Pydantic appends names of union members (``date``, ``literal[...]``) to the location; they are
    not in the document, so the walk stops where the document does.
    """
    path: list[int | str] = []
    node = data
    for index, part in enumerate(loc):
        if isinstance(node, dict) and isinstance(part, str):
            if part in node:
                node = node[part]
            elif index < len(loc) - 1:
                break  # a union member's name
            path.append(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            path.append(part)
        else:
            break
    return path


def _escape(part: int | str) -> str:
    return str(part).replace("~", "~0").replace("/", "~1")


def _label(path: list[int | str]) -> str:
    label = ""
    for part in path:
        label += f"[{part}]" if isinstance(part, int) else (f".{part}" if label else str(part))
    return label or "the quote"


def _sentence(err: ErrorDetails, path: list[int | str]) -> str:
    kind = err["type"]
    ctx = err.get("ctx", {})
    got = _show(err.get("input"))
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return (
            "is not a field of a quote; anything not in the structured quote would be signed "
            "but never billed"
        )
    if kind in {"int_type", "int_from_float", "int_parsing"}:
        return f"must be a whole number, not {got}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}, not {got}"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le')}, not {got}"
    if kind == "string_pattern_mismatch":
        field = next((p for p in reversed(path) if isinstance(p, str)), "")
        return f"{_PATTERN_HINTS.get(field, 'has the wrong format')}, not {got}"
    if kind == "tax_id_invalid":
        return f"{err['msg']}, not {got}"
    if kind == "value_error":
        return f"{ctx.get('error')}, not {got}"
    message = err["msg"]
    return f"is invalid: {message[:1].lower()}{message[1:]}"


def _show(value: object) -> str:
    if isinstance(value, Decimal | int) and not isinstance(value, bool):
        text = str(value)
    elif isinstance(value, datetime | date):
        text = value.isoformat()
    else:
        text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
