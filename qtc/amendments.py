"""Amendments: more seats or new products added mid-term to a signed, billed deal
(docs/architecture.md, "Amendments").

An amendment is co-termed with the deal it amends: it shares its currency, term, billing frequency,
anchor and uplift, and only adds lines. What the customer owes for the rest of the current billing
period is a proration of that period's unit price by days; from the next period on, the contract's
regular invoices carry the quantities after the amendment.

``parse_amendment`` checks the document, ``price_amendment`` runs the CPQ rules against the catalog
and the original and prices it, and ``schedule_amendment`` is the arithmetic alone: it uses only
what the priced lines and the original carry, so the deal re-dates an amendment to its real
signature without consulting a catalog that may have changed since the quote went out.

Choices the rules leave open:

- ``amends`` is carried as given; the entry points that start an amendment deal check it against
  the deal they are told to amend.
- A ``discount_percent`` written on a line whose SKU is already on the original is refused whatever
  its value: the original's net price stands, and restating it (even unchanged) is not allowed.
- The quantity after the amendment (original + added) is checked against the SKU's bounds for every
  kind; for a one-time SKU that means all packages bought over the contract.
- Lines keep the amendment's order, then SKUs attached because a line requires them. Later
  invoices list the original's recurring lines in their order, then the new recurring SKUs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, localcontext
from typing import Annotated, Any

from pydantic import Field, StrictInt, StringConstraints, ValidationError

from qtc.cpq import _decode_json, _features, _invalid, _line_index, _violations_from
from qtc.dates import add_months, as_utc, days_in_month, utc_date
from qtc.errors import QuoteRejected
from qtc.models import (
    PERIOD_MONTHS,
    Adjustment,
    ApprovalNeeded,
    Catalog,
    FeatureValue,
    InvoiceLine,
    Model,
    NonEmpty,
    Percent,
    PricedLine,
    PricedQuote,
    PriceStatus,
    ScheduledInvoice,
    Signer,
    SkuKind,
    Violation,
)
from qtc.money import minor_exponent, to_minor
from qtc.pricing import contract_years

# Uplift compounds; see qtc.pricing for why the precision is this high.
_PRECISION = 80

ALLOWED_FIELDS: tuple[str, ...] = (
    "quote_id",
    "opportunity_id",
    "amends",
    "signer",
    "valid_until",
    "lines",
    "payment_terms_days",
)
"""The only fields an amendment may carry: everything else is the original's."""


# --- input ---------------------------------------------------------------------------------


class AmendmentLine(Model):
    """An addition: ``quantity`` more of ``sku``. A quantity below 1 is ``quantity_out_of_range``
    (checked with the business rules, not as a malformed field)."""

    sku: NonEmpty
    quantity: StrictInt
    discount_percent: Percent | None = None


class AmendmentQuote(Model):
    quote_id: NonEmpty
    opportunity_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    amends: NonEmpty
    signer: Signer
    valid_until: date
    lines: list[AmendmentLine] = Field(min_length=1, max_length=200)
    payment_terms_days: StrictInt | None = None


def is_amendment(raw: object) -> bool:
    """Whether a decoded document is an amendment (it names the deal it amends)."""
    return isinstance(raw, dict) and "amends" in raw


# --- output --------------------------------------------------------------------------------


class AmendedLine(Model):
    """An amendment line after CPQ, carrying every fact its arithmetic needs."""

    sku: str
    name: str
    kind: SkuKind
    quantity_added: int
    quantity_after: int
    new_line: bool
    discount_percent: Decimal
    list_price: Decimal
    auto_added: bool = False
    reason: str | None = None
    unit_amounts_by_year_minor: list[int] | None = None
    unit_amount_minor: int | None = None
    # The SKU's features at the quantity after the amendment (what the product backend is told).
    features: dict[str, FeatureValue] = Field(default_factory=dict)


class Period(Model):
    start: date
    end: date


class PricedAmendment(Model):
    status: PriceStatus
    amends: str
    quote_id: str
    opportunity_id: str
    currency: str
    signed_at: datetime
    effective_date: date
    current_period: Period
    payment_terms_days: int
    valid_until: date
    signer: Signer
    lines: list[AmendedLine]
    invoices: list[ScheduledInvoice]
    mrr_delta_minor: int
    arr_delta_minor: int
    tcv_delta_minor: int
    first_invoice_total_minor: int
    adjustments: list[Adjustment] = Field(default_factory=list)
    approvals_needed: list[ApprovalNeeded] = Field(default_factory=list)


# --- parsing -------------------------------------------------------------------------------


def parse_amendment(raw: bytes | str | dict[str, Any]) -> AmendmentQuote:
    """Validate untrusted input as an ``AmendmentQuote``.

    Raises:
        QuoteRejected: ``amendment_field_not_allowed`` for each field the original owns (or that
            no quote has), ``invalid_field`` for each missing or malformed one.
    """
    data: object = raw if isinstance(raw, dict) else _decode_json(raw)
    if not isinstance(data, dict):
        raise QuoteRejected([_invalid("", "an amendment must be a JSON object")])
    violations = [
        Violation(
            pointer=f"/{_escape(key)}",
            code="amendment_field_not_allowed",
            message=f"{key} cannot be set on an amendment: it is the original contract's "
            f"(an amendment carries only {', '.join(ALLOWED_FIELDS)})",
        )
        for key in data
        if key not in ALLOWED_FIELDS
    ]
    kept = {key: value for key, value in data.items() if key in ALLOWED_FIELDS}
    try:
        parsed = AmendmentQuote.model_validate(kept)
    except ValidationError as exc:
        raise QuoteRejected(violations + _violations_from(exc.errors(), kept)) from exc
    if violations:
        raise QuoteRejected(violations)
    return parsed


def original_from_json(
    raw: bytes | str | dict[str, Any], catalog: Catalog | None = None
) -> PricedQuote:
    """The original's priced quote: as ``qtc quote price --json`` prints it, or a deal's status
    document holding it under ``priced_quote``.

    A priced quote written by another tool may carry only the published figures (dates, lines
    with their unit amounts, invoices, totals). With a ``catalog``, what the arithmetic needs
    and such a document leaves out is read from it: the term and billing frequency from the
    dates, list prices from the catalog, the uplift from the yearly unit amounts.

    Raises:
        QuoteRejected: ``invalid_field`` naming what is missing or malformed, pointers relative
            to the priced quote.
    """
    data: object = raw if isinstance(raw, dict) else _decode_json(raw)
    if isinstance(data, dict) and isinstance(data.get("priced_quote"), dict):
        data = data["priced_quote"]
    if not isinstance(data, dict):
        raise QuoteRejected([_invalid("", "the original must be a priced quote (a JSON object)")])
    try:
        return PricedQuote.model_validate(data)
    except ValidationError as exc:
        completed = _completed(data, catalog) if catalog is not None else None
        if completed is not None:
            return completed
        raise QuoteRejected(_violations_from(exc.errors(), data)) from exc


def _uplift_of(lines: list[dict[str, Any]], period_months: int, currency: str) -> Decimal | None:
    """The yearly uplift (in hundredths of a percent) that reproduces every recurring line's
    yearly unit amounts exactly, or None when none does."""
    yearly = [
        (
            Decimal(str(line["list_price"])) * (1 - Decimal(str(line["discount_percent"])) / 100),
            [int(a) for a in line["unit_amounts_by_year_minor"]],
        )
        for line in lines
        if line.get("kind") == "recurring" and len(line.get("unit_amounts_by_year_minor") or []) > 1
    ]
    if not yearly:
        return Decimal(0)
    largest = max((amounts for _, amounts in yearly), key=lambda amounts: amounts[0])
    guess = ((Decimal(largest[1]) / Decimal(largest[0]) - 1) * 10000).to_integral_value()
    for step in range(0, 201):
        for hundredths in (guess + step, guess - step):
            candidate = hundredths / 100
            if candidate < 0:
                continue
            with localcontext() as ctx:
                ctx.prec = _PRECISION
                growth = 1 + candidate / 100
                if all(
                    to_minor(net * period_months * growth**k, currency) == amount
                    for net, amounts in yearly
                    for k, amount in enumerate(amounts)
                ):
                    return candidate.normalize()
    return None


def _completed(data: dict[str, Any], catalog: Catalog) -> PricedQuote | None:
    """``data`` with what only our own priced quotes carry filled in, or None if it still is
    not a priced quote."""
    try:
        start = date.fromisoformat(str(data["start_date"]))
        term_start = date.fromisoformat(str(data["term_start"]))
        term_end = date.fromisoformat(str(data["term_end"]))
        currency = str(data["currency"])
        term_months = (term_end.year - term_start.year) * 12 + term_end.month - term_start.month
        regular = [
            inv
            for inv in data.get("invoices") or []
            if date.fromisoformat(str(inv["period_start"])) >= term_start
        ]
        first = regular[0] if regular else None
        if first is not None:
            p_start = date.fromisoformat(str(first["period_start"]))
            p_end = date.fromisoformat(str(first["period_end"]))
            months = (p_end.year - p_start.year) * 12 + p_end.month - p_start.month
        else:
            months = 12
        frequency = {1: "monthly", 3: "quarterly"}.get(months, "annual")
        lines = []
        for line in data["lines"]:
            sku = catalog.sku(str(line["sku"]))
            filled = dict(line)
            filled.setdefault("name", sku.name if sku is not None else line["sku"])
            if "list_price" not in filled:
                if sku is None or currency not in sku.prices:
                    return None
                filled["list_price"] = str(sku.prices[currency])
            filled.setdefault("discount_percent", "0")
            lines.append(filled)
        uplift = _uplift_of(lines, PERIOD_MONTHS[frequency], currency)
        if uplift is None:
            return None
        account = {
            "legal_name": "(original)",
            "billing_email": "billing@original.invalid",
            "address": {"line1": "-", "city": "-", "postal_code": "-", "country": "US"},
        }
        defaults: dict[str, Any] = {
            "quote_id": "(original)",
            "opportunity_id": "original",
            "signed_at": f"{start.isoformat()}T00:00:00Z",
            "term_months": term_months,
            "billing_frequency": frequency,
            "billing_anchor": "first_of_month" if start != term_start else "start",
            "payment_terms_days": 30,
            "uplift_percent": str(uplift.normalize()),
            "valid_until": "9999-12-31",
            "account": account,
            "signer": {"name": "(original)", "email": "signer@original.invalid"},
            "mrr_minor": 0,
            "arr_minor": 0,
            "tcv_minor": 0,
            "first_invoice_total_minor": 0,
        }
        return PricedQuote.model_validate({**defaults, **data, "lines": lines})
    except (KeyError, TypeError, ValueError, ArithmeticError, ValidationError):
        return None


# --- the periods of the original -------------------------------------------------------------


@dataclass(frozen=True)
class ContractPeriod:
    start: date
    end: date
    stub: bool
    year: int  # 0-based contract year; 0 for the stub


def contract_periods(original: PricedQuote) -> list[ContractPeriod]:
    """Every invoice period of the original: its stub (if any), then each regular period, dated
    from the term start."""
    period_months = PERIOD_MONTHS[original.billing_frequency]
    found: list[ContractPeriod] = []
    if original.start_date < original.term_start:
        found.append(ContractPeriod(original.start_date, original.term_start, True, 0))
    for i in range(original.term_months // period_months):
        found.append(
            ContractPeriod(
                add_months(original.term_start, i * period_months),
                add_months(original.term_start, (i + 1) * period_months),
                False,
                i * period_months // 12,
            )
        )
    return found


def current_period(original: PricedQuote, effective: date) -> ContractPeriod | None:
    """The original's period that contains ``effective``; None outside [start_date, term_end)."""
    return next((p for p in contract_periods(original) if p.start <= effective < p.end), None)


# --- pricing -------------------------------------------------------------------------------


def price_amendment(
    amendment: AmendmentQuote | bytes | str | dict[str, Any],
    original: PricedQuote,
    catalog: Catalog,
    signed_at: datetime,
) -> PricedAmendment:
    """Check every rule and price ``amendment`` as if signed at ``signed_at``.

    ``original`` is the original's priced quote re-dated to its signature. Its currency and terms
    govern; prices of SKUs already on it are the original's, whatever the catalog says now.

    Raises:
        QuoteRejected: listing every violation found.
    """
    parsed = amendment if isinstance(amendment, AmendmentQuote) else parse_amendment(amendment)
    signed_at = as_utc(signed_at)
    effective = utc_date(signed_at)
    violations: list[Violation] = []
    if current_period(original, effective) is None:
        violations.append(_outside_term(original, effective))
    payment_terms = parsed.payment_terms_days
    if payment_terms is not None and payment_terms not in catalog.policy.payment_terms_days:
        violations.append(
            Violation(
                pointer="/payment_terms_days",
                code="payment_terms_not_allowed",
                message=f"payment terms of {payment_terms} days are not offered; allowed: "
                f"{', '.join(str(d) for d in catalog.policy.payment_terms_days)} days",
            )
        )
    if effective > parsed.valid_until:
        violations.append(
            Violation(
                pointer="/valid_until",
                code="quote_expired",
                message=f"the amendment was valid until {parsed.valid_until} and cannot be "
                f"signed on {effective}",
            )
        )
    resolved = _resolve(parsed, original, catalog)
    violations.extend(sorted(resolved.violations, key=_line_index))
    if violations:
        raise QuoteRejected(violations)
    return schedule_amendment(
        PricedAmendment(
            status="needs_approval" if resolved.approvals else "ok",
            amends=parsed.amends,
            quote_id=parsed.quote_id,
            opportunity_id=parsed.opportunity_id,
            currency=original.currency,
            signed_at=signed_at,
            effective_date=effective,
            current_period=Period(start=effective, end=effective),  # set by the schedule
            payment_terms_days=(
                payment_terms if payment_terms is not None else original.payment_terms_days
            ),
            valid_until=parsed.valid_until,
            signer=parsed.signer,
            lines=resolved.lines,
            invoices=[],
            mrr_delta_minor=0,
            arr_delta_minor=0,
            tcv_delta_minor=0,
            first_invoice_total_minor=0,
            adjustments=resolved.adjustments,
            approvals_needed=resolved.approvals,
        ),
        original,
        signed_at,
    )


def schedule_amendment(
    amendment: PricedAmendment, original: PricedQuote, signed_at: datetime
) -> PricedAmendment:
    """``amendment`` dated to ``signed_at``: effective date, current period, the amendment invoice,
    every later invoice of the contract and the deltas, from the lines' own prices only.

    Raises:
        QuoteRejected: ``amendment_outside_term`` when the signature falls outside the original's
            invoice periods.
    """
    signed_at = as_utc(signed_at)
    effective = utc_date(signed_at)
    current = current_period(original, effective)
    if current is None:
        raise QuoteRejected([_outside_term(original, effective)])
    currency = original.currency
    lines = [_with_unit_amounts(line, original) for line in amendment.lines]

    items: list[InvoiceLine] = []
    days = Decimal((current.end - current.start).days)
    remaining = Decimal((current.end - effective).days)
    for line in lines:
        if line.kind == "one_time":
            unit = line.unit_amount_minor or 0
            items.append(
                InvoiceLine(
                    sku=line.sku,
                    kind="one_time",
                    quantity=line.quantity_added,
                    unit_amount_minor=unit,
                    amount_minor=unit * line.quantity_added,
                )
            )
            continue
        period_unit = _period_unit_minor(line, original, current)
        with localcontext() as ctx:
            ctx.prec = _PRECISION
            major = Decimal(period_unit).scaleb(-minor_exponent(currency))
            unit = to_minor(major * remaining / days, currency)
        items.append(
            InvoiceLine(
                sku=line.sku,
                kind="proration",
                quantity=line.quantity_added,
                unit_amount_minor=unit,
                amount_minor=unit * line.quantity_added,
                period_start=effective,
                period_end=current.end,
            )
        )
    invoices = [
        ScheduledInvoice(
            date=effective,
            period_start=effective,
            period_end=current.end,
            lines=items,
            total_minor=sum(item.amount_minor for item in items),
        )
    ]

    after = contract_lines_after(original, lines)
    added = {line.sku: line.quantity_added for line in lines if line.kind == "recurring"}
    later_delta = 0
    for period in contract_periods(original):
        if period.stub or period.start < current.end:
            continue
        period_items = []
        for contract_line in after:
            if contract_line.kind != "recurring":
                continue
            unit = (contract_line.unit_amounts_by_year_minor or [])[period.year]
            period_items.append(
                InvoiceLine(
                    sku=contract_line.sku,
                    kind="recurring",
                    quantity=contract_line.quantity,
                    unit_amount_minor=unit,
                    amount_minor=unit * contract_line.quantity,
                    period_start=period.start,
                    period_end=period.end,
                )
            )
            later_delta += unit * added.get(contract_line.sku, 0)
        if not period_items:
            continue  # a services order stays one without recurring lines: no periodic invoices
        invoices.append(
            ScheduledInvoice(
                date=period.start,
                period_start=period.start,
                period_end=period.end,
                lines=period_items,
                total_minor=sum(item.amount_minor for item in period_items),
            )
        )

    mrr_delta = 0
    for line in lines:
        if line.kind == "recurring":
            with localcontext() as ctx:
                ctx.prec = _PRECISION
                mrr_delta += to_minor(_monthly(line) * line.quantity_added, currency)
    return amendment.model_copy(
        deep=True,
        update={
            "signed_at": signed_at,
            "effective_date": effective,
            "current_period": Period(start=current.start, end=current.end),
            "lines": lines,
            "invoices": invoices,
            "mrr_delta_minor": mrr_delta,
            "arr_delta_minor": 12 * mrr_delta,
            "tcv_delta_minor": invoices[0].total_minor + later_delta,
            "first_invoice_total_minor": invoices[0].total_minor,
        },
    )


def contract_lines_after(original: PricedQuote, lines: list[AmendedLine]) -> list[PricedLine]:
    """The contract's lines once the amendment applies: the original's lines with the quantities
    after it (features too), then each new SKU. A one-time line counts every package bought."""
    amended = {line.sku: line for line in lines}
    result: list[PricedLine] = []
    for line in original.lines:
        change = amended.get(line.sku)
        if change is None:
            result.append(line)
        else:
            result.append(
                line.model_copy(
                    update={"quantity": change.quantity_after, "features": change.features}
                )
            )
    for new in lines:
        if new.new_line:
            result.append(
                PricedLine(
                    sku=new.sku,
                    name=new.name,
                    kind=new.kind,
                    quantity=new.quantity_added,
                    discount_percent=new.discount_percent,
                    list_price=new.list_price,
                    auto_added=new.auto_added,
                    reason=new.reason,
                    unit_amounts_by_year_minor=new.unit_amounts_by_year_minor,
                    unit_amount_minor=new.unit_amount_minor,
                    features=new.features,
                )
            )
    return result


def amended_contract(original: PricedQuote, amendment: PricedAmendment) -> PricedQuote:
    """The original's priced quote as it stands after ``amendment``: its lines at the quantities
    after it; the invoices up to the current period, the amendment invoice, then the later ones
    as the amendment prices them; MRR, ARR and TCV with the deltas added."""
    earlier = [inv for inv in original.invoices if inv.date < amendment.current_period.end]
    return original.model_copy(
        deep=True,
        update={
            "lines": contract_lines_after(original, amendment.lines),
            "invoices": [*earlier, *amendment.invoices],
            "mrr_minor": original.mrr_minor + amendment.mrr_delta_minor,
            "arr_minor": original.arr_minor + amendment.arr_delta_minor,
            "tcv_minor": original.tcv_minor + amendment.tcv_delta_minor,
        },
    )


def amendment_deal_quote(original: PricedQuote, amendment: PricedAmendment) -> PricedQuote:
    """The priced quote an amendment deal carries: the contract after the amendment (its lines,
    MRR and ARR), under the amendment's own quote, opportunity, signer, validity, approvals and
    payment terms; its invoices are the amendment invoice, then the later ones.

    What the contract shows and what the status previews is the amendment; what the product
    backend is told is the whole contract after it.
    """
    return amended_contract(original, amendment).model_copy(
        update={
            "status": amendment.status,
            "quote_id": amendment.quote_id,
            "opportunity_id": amendment.opportunity_id,
            "signed_at": amendment.signed_at,
            "start_date": amendment.effective_date,
            "payment_terms_days": amendment.payment_terms_days,
            "valid_until": amendment.valid_until,
            "signer": amendment.signer,
            "invoices": amendment.invoices,
            "tcv_minor": amendment.tcv_delta_minor,
            "first_invoice_total_minor": amendment.first_invoice_total_minor,
            "adjustments": amendment.adjustments,
            "approvals_needed": amendment.approvals_needed,
        }
    )


def amendment_to_json(priced: PricedAmendment) -> dict[str, Any]:
    """The public JSON of a priced amendment: integer minor units, decimals as strings, no nulls."""
    return priced.model_dump(mode="json", exclude_none=True)


# --- rules ---------------------------------------------------------------------------------


@dataclass
class _Resolved:
    lines: list[AmendedLine]
    violations: list[Violation]
    adjustments: list[Adjustment]
    approvals: list[ApprovalNeeded]


def _resolve(amendment: AmendmentQuote, original: PricedQuote, catalog: Catalog) -> _Resolved:
    result = _Resolved(lines=[], violations=[], adjustments=[], approvals=[])
    currency = original.currency
    on_original = {line.sku: line for line in original.lines}
    first_line: dict[str, int] = {}
    pointers: dict[str, str] = {}
    for i, quote_line in enumerate(amendment.lines):
        pointer = f"/lines/{i}"
        existing = on_original.get(quote_line.sku)
        sku = catalog.sku(quote_line.sku)
        if sku is None and existing is None:
            result.violations.append(
                Violation(
                    pointer=f"{pointer}/sku",
                    code="unknown_sku",
                    message=f"{quote_line.sku} is not in the catalog",
                )
            )
            continue
        duplicate = quote_line.sku in first_line
        if duplicate:
            result.violations.append(
                Violation(
                    pointer=f"{pointer}/sku",
                    code="duplicate_sku",
                    message=f"{quote_line.sku} is already on line {first_line[quote_line.sku]}; "
                    "put the whole added quantity on one line",
                )
            )
        else:
            first_line[quote_line.sku] = i
        added = quote_line.quantity
        after = added + (existing.quantity if existing is not None else 0)
        if added < 1:
            result.violations.append(
                Violation(
                    pointer=f"{pointer}/quantity",
                    code="quantity_out_of_range",
                    message=f"an amendment adds at least 1 of {quote_line.sku}; it has {added}",
                )
            )
        elif sku is not None and not sku.min_quantity <= after <= sku.max_quantity:
            result.violations.append(
                Violation(
                    pointer=f"{pointer}/quantity",
                    code="quantity_out_of_range",
                    message=f"{sku.code} is sold in quantities of {sku.min_quantity} to "
                    f"{sku.max_quantity} {sku.unit}s; after the amendment the contract would "
                    f"have {after}",
                )
            )
        if existing is not None:
            if quote_line.discount_percent is not None:
                result.violations.append(
                    Violation(
                        pointer=f"{pointer}/discount_percent",
                        code="amendment_field_not_allowed",
                        message=f"{quote_line.sku} is already on the original at "
                        f"{existing.discount_percent}% off; an amendment adds at that price "
                        "and cannot restate its discount",
                    )
                )
            if duplicate:
                continue
            result.lines.append(
                AmendedLine(
                    sku=existing.sku,
                    name=existing.name,
                    kind=existing.kind,
                    quantity_added=added,
                    quantity_after=after,
                    new_line=False,
                    discount_percent=existing.discount_percent,
                    list_price=existing.list_price,
                    unit_amounts_by_year_minor=existing.unit_amounts_by_year_minor,
                    unit_amount_minor=existing.unit_amount_minor,
                    features=_features(sku, after) if sku is not None else existing.features,
                )
            )
            pointers[existing.sku] = pointer
            continue
        assert sku is not None
        if currency not in sku.prices:
            result.violations.append(
                Violation(
                    pointer=f"{pointer}/sku",
                    code="currency_not_supported",
                    message=f"{sku.code} has no {currency} price",
                )
            )
        discount = quote_line.discount_percent or Decimal(0)
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
        if duplicate or currency not in sku.prices:
            continue
        result.lines.append(
            AmendedLine(
                sku=sku.code,
                name=sku.name,
                kind=sku.kind,
                quantity_added=added,
                quantity_after=after,
                new_line=True,
                discount_percent=discount,
                list_price=sku.prices[currency],
                features=_features(sku, after),
            )
        )
        pointers[sku.code] = pointer
    _attach_required(result, original, catalog, pointers)
    _check_exclusions(result, original, catalog, pointers)
    return result


def _attach_required(
    result: _Resolved, original: PricedQuote, catalog: Catalog, pointers: dict[str, str]
) -> None:
    """SKUs the added lines require and neither the original nor the amendment has are added,
    transitively, at no discount."""
    present = {line.sku for line in original.lines} | {line.sku for line in result.lines}
    currency = original.currency
    for line in result.lines:  # appending while iterating walks the added SKUs' requirements too
        sku = catalog.sku(line.sku)
        if sku is None:
            continue
        for requirement in sku.requires:
            if requirement.sku in present:
                continue
            required = catalog.sku(requirement.sku)
            pointer = pointers[line.sku]
            if required is None:
                result.violations.append(
                    Violation(
                        pointer=f"{pointer}/sku",
                        code="unknown_sku",
                        message=f"{line.sku} requires {requirement.sku}, "
                        "which is not in the catalog",
                    )
                )
                continue
            if currency not in required.prices:
                result.violations.append(
                    Violation(
                        pointer=f"{pointer}/sku",
                        code="currency_not_supported",
                        message=f"{line.sku} requires {required.code}, "
                        f"which has no {currency} price",
                    )
                )
                continue
            present.add(required.code)
            pointers[required.code] = pointer
            result.lines.append(
                AmendedLine(
                    sku=required.code,
                    name=required.name,
                    kind=required.kind,
                    quantity_added=requirement.quantity,
                    quantity_after=requirement.quantity,
                    new_line=True,
                    discount_percent=Decimal(0),
                    list_price=required.prices[currency],
                    auto_added=True,
                    reason=f"required by {line.sku}",
                    features=_features(required, requirement.quantity),
                )
            )
            result.adjustments.append(
                Adjustment(rule="requires", sku=required.code, because=line.sku)
            )


def _check_exclusions(
    result: _Resolved, original: PricedQuote, catalog: Catalog, pointers: dict[str, str]
) -> None:
    """Each added SKU against the original's and the earlier added ones, reported once on the
    amendment's line."""
    earlier = [line.sku for line in original.lines]
    for line in result.lines:
        if not line.new_line:
            continue
        mine = catalog.sku(line.sku)
        for other in earlier:
            theirs = catalog.sku(other)
            if other == line.sku:
                continue
            if (mine is not None and other in mine.excludes) or (
                theirs is not None and line.sku in theirs.excludes
            ):
                what = f"{line.sku} ({line.reason})" if line.auto_added else line.sku
                result.violations.append(
                    Violation(
                        pointer=f"{pointers[line.sku]}/sku",
                        code="excluded_sku",
                        message=f"{what} cannot be sold together with {other}",
                    )
                )
                break
        earlier.append(line.sku)


# --- arithmetic ----------------------------------------------------------------------------


def _monthly(line: AmendedLine) -> Decimal:
    """``m``: the net monthly unit price, exact (a SKU on the original carries its price)."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return line.list_price * (1 - line.discount_percent / 100)


def _with_unit_amounts(line: AmendedLine, original: PricedQuote) -> AmendedLine:
    """Unit amounts of a new SKU under the original's terms; a SKU on the original keeps its own."""
    if not line.new_line:
        return line
    currency = original.currency
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        m = _monthly(line)
        if line.kind == "one_time":
            unit = to_minor(m, currency)
            return line.model_copy(
                update={"unit_amount_minor": unit, "unit_amounts_by_year_minor": None}
            )
        period_months = PERIOD_MONTHS[original.billing_frequency]
        growth = 1 + original.uplift_percent / 100
        by_year = [
            to_minor(m * period_months * growth**year, currency)
            for year in range(contract_years(original.term_months))
        ]
    return line.model_copy(
        update={"unit_amounts_by_year_minor": by_year, "unit_amount_minor": None}
    )


def _period_unit_minor(line: AmendedLine, original: PricedQuote, period: ContractPeriod) -> int:
    """``U``: one unit's price for the whole current period (the stub's by day, else year k's)."""
    if not period.stub:
        return (line.unit_amounts_by_year_minor or [])[period.year]
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        m = _monthly(line)
        fraction = Decimal((period.end - period.start).days) / days_in_month(period.start)
        return to_minor(m * fraction, original.currency)


def _outside_term(original: PricedQuote, effective: date) -> Violation:
    return Violation(
        pointer="",
        code="amendment_outside_term",
        message=f"an amendment signed on {effective} is outside the original's term, which "
        f"is billed from {original.start_date} to {original.term_end}",
    )


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")
