"""``qtc quote price FILE``: price a quote file against the catalog, as the deal would be priced.

Exit codes: 0 priced (``ok`` or ``needs_approval``), 2 quote rejected (the error JSON on stdout), 1
the file or the catalog cannot be used (one line on stderr). Never a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from qtc.amendments import (
    PricedAmendment,
    amendment_to_json,
    is_amendment,
    original_from_json,
    parse_amendment,
    price_amendment,
)
from qtc.catalog import load_catalog
from qtc.cpq import MAX_QUOTE_BYTES, price_quote, priced_to_json, violations_to_json
from qtc.errors import CatalogError, QuoteRejected
from qtc.models import Catalog, PricedQuote, Violation
from qtc.money import format_minor
from runtime.settings import get_settings

app = typer.Typer(
    help="Price quotes against the product catalog.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

EXIT_UNUSABLE = 1
EXIT_REJECTED = 2


@app.callback()
def quote() -> None:
    """Price quotes against the product catalog."""


@app.command()
def price(
    file: Annotated[Path, typer.Argument(help="Quote JSON file (docs/architecture.md).")],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the priced quote as one JSON document.")
    ] = False,
    catalog: Annotated[
        Path | None,
        typer.Option("--catalog", help="Catalog TOML; default QTC_CATALOG or catalog.toml."),
    ] = None,
    signed_at: Annotated[
        str | None,
        typer.Option(
            "--signed-at",
            help="Signature time, ISO 8601 (e.g. 2026-12-15T10:00:00Z); default now. "
            "Without an offset it is taken as UTC.",
        ),
    ] = None,
    original: Annotated[
        Path | None,
        typer.Option(
            "--original",
            help="For an amendment: the original's priced quote as signed (what `qtc deal "
            "status ID --json` shows under priced_quote).",
        ),
    ] = None,
) -> None:
    """Price FILE: lines, invoice schedule, totals, adjustments and approvals needed.

    With --original, FILE is an amendment co-termed with that original: the proration invoice,
    the contract's later invoices after it and the MRR, ARR and TCV deltas.
    """
    signature = _signature_time(signed_at)
    raw = _read_quote(file)
    try:
        products = load_catalog(catalog or get_settings().catalog)
    except CatalogError as exc:
        _fail(str(exc))
    if original is None and _looks_like_amendment(raw):
        _fail(f"{file} amends a deal: give the original's priced quote with --original")
    if original is not None:
        _price_amendment(file, raw, _read_quote(original), products, signature, json_output)
        return
    try:
        priced = price_quote(raw, products, signature)
    except QuoteRejected as exc:
        typer.echo(json.dumps(violations_to_json(exc.violations), indent=2))
        if not json_output:
            _print_violations(file, exc.violations)
        raise typer.Exit(EXIT_REJECTED) from exc
    if json_output:
        typer.echo(json.dumps(priced_to_json(priced), indent=2))
    else:
        _print_priced(priced)


def _price_amendment(
    file: Path,
    raw: bytes,
    original_raw: bytes,
    products: Catalog,
    signature: datetime,
    json_output: bool,
) -> None:
    try:
        original = original_from_json(original_raw, products)
    except QuoteRejected as exc:
        _fail(f"--original is not a priced quote: {exc}")
    try:
        priced = price_amendment(parse_amendment(raw), original, products, signature)
    except QuoteRejected as exc:
        typer.echo(json.dumps(violations_to_json(exc.violations), indent=2))
        if not json_output:
            _print_violations(file, exc.violations)
        raise typer.Exit(EXIT_REJECTED) from exc
    if json_output:
        typer.echo(json.dumps(amendment_to_json(priced), indent=2))
    else:
        _print_amendment(priced)


def _looks_like_amendment(raw: bytes) -> bool:
    try:
        return is_amendment(json.loads(raw))
    except ValueError:
        return False  # pricing reports what is wrong with it


def _signature_time(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        _fail(f"--signed-at: {value!r} is not an ISO 8601 time such as 2026-12-15T10:00:00Z")


def _read_quote(file: Path) -> bytes:
    """The file's bytes, reading at most one byte past the limit so a huge file costs nothing."""
    try:
        with file.open("rb") as handle:
            return handle.read(MAX_QUOTE_BYTES + 1)
    except OSError as exc:
        _fail(f"cannot read {file}: {exc.strerror or exc}")


def _fail(message: str) -> NoReturn:
    typer.echo(f"qtc quote price: {message}", err=True)
    raise typer.Exit(EXIT_UNUSABLE)


# --- human output -------------------------------------------------------------------------


def _print_violations(file: Path, violations: list[Violation]) -> None:
    table = Table(title=f"{file} rejected: {len(violations)} problem(s)", title_justify="left")
    for column in ("pointer", "code", "message"):
        table.add_column(column, overflow="fold")
    for violation in violations:
        table.add_row(violation.pointer or "(document)", violation.code, violation.message)
    Console(stderr=True).print(table)


def _print_priced(priced: PricedQuote) -> None:
    console = Console()
    code = priced.currency.upper()
    money = _money(priced.currency)
    status = "[green]ok[/green]" if priced.status == "ok" else "[yellow]needs approval[/yellow]"
    console.print(
        f"[bold]{priced.quote_id}[/bold] for {priced.account.legal_name} "
        f"(opportunity {priced.opportunity_id})"
    )
    console.print(f"Status: {status}")
    console.print(
        f"{priced.term_months} months, {priced.billing_frequency} billing "
        f"(anchor {priced.billing_anchor}), {priced.uplift_percent}% yearly uplift, "
        f"net {priced.payment_terms_days} days. Starts {priced.start_date}; "
        f"term {priced.term_start} to {priced.term_end}."
    )

    lines = Table(title=f"Lines ({code})", title_justify="left")
    lines.add_column("SKU", no_wrap=True)
    lines.add_column("kind")
    lines.add_column("qty", justify="right")
    lines.add_column("list", justify="right")
    lines.add_column("disc.", justify="right")
    lines.add_column("unit price by year")
    lines.add_column("note")
    for line in priced.lines:
        if line.unit_amounts_by_year_minor is not None:
            unit = " / ".join(money(amount) for amount in line.unit_amounts_by_year_minor)
        else:
            unit = money(line.unit_amount_minor or 0)
        lines.add_row(
            line.sku,
            line.kind,
            str(line.quantity),
            str(line.list_price),
            f"{line.discount_percent}%",
            unit,
            line.reason or "",
        )
    console.print(lines)

    schedule = Table(title=f"Invoice schedule ({code})", title_justify="left")
    for column in ("#", "date", "period", "recurring", "stub", "one-time", "total"):
        schedule.add_column(column, justify="left" if column in {"date", "period"} else "right")
    for number, invoice in enumerate(priced.invoices, start=1):
        by_kind = {
            kind: sum(item.amount_minor for item in invoice.lines if item.kind == kind)
            for kind in ("recurring", "stub", "one_time")
        }
        schedule.add_row(
            str(number),
            invoice.date.isoformat(),
            f"{invoice.period_start} → {invoice.period_end}",
            *(money(amount) if amount else "" for amount in by_kind.values()),
            money(invoice.total_minor),
        )
    console.print(schedule)

    totals = Table(title=f"Totals ({code})", title_justify="left", show_header=False)
    totals.add_column("figure")
    totals.add_column("amount", justify="right")
    for label, amount in (
        ("MRR (year 1)", priced.mrr_minor),
        ("ARR (year 1)", priced.arr_minor),
        ("TCV", priced.tcv_minor),
        ("First invoice", priced.first_invoice_total_minor),
    ):
        totals.add_row(label, money(amount))
    console.print(totals)

    if priced.adjustments:
        adjustments = Table(title="Adjustments", title_justify="left")
        for column in ("rule", "SKU added", "because"):
            adjustments.add_column(column)
        for adjustment in priced.adjustments:
            adjustments.add_row(adjustment.rule, adjustment.sku, adjustment.because)
        console.print(adjustments)
    if priced.approvals_needed:
        approvals = Table(title="Deal-desk approvals needed", title_justify="left")
        for column in ("line", "SKU", "discount", "limit", "why"):
            approvals.add_column(column, overflow="fold")
        for approval in priced.approvals_needed:
            approvals.add_row(
                approval.pointer,
                approval.sku,
                f"{approval.discount_percent}%",
                f"{approval.max_discount_percent}%",
                approval.message,
            )
        console.print(approvals)


def _print_amendment(priced: PricedAmendment) -> None:
    console = Console()
    code = priced.currency.upper()
    money = _money(priced.currency)
    status = "[green]ok[/green]" if priced.status == "ok" else "[yellow]needs approval[/yellow]"
    console.print(
        f"[bold]{priced.quote_id}[/bold] amends {priced.amends} (opportunity "
        f"{priced.opportunity_id}); effective {priced.effective_date}, current period "
        f"{priced.current_period.start} to {priced.current_period.end}"
    )
    console.print(f"Status: {status}")
    lines = Table(title=f"Lines ({code})", title_justify="left")
    for column in ("SKU", "kind", "added", "after", "new", "unit price by year", "note"):
        lines.add_column(column)
    for line in priced.lines:
        if line.unit_amounts_by_year_minor is not None:
            unit = " / ".join(money(amount) for amount in line.unit_amounts_by_year_minor)
        else:
            unit = money(line.unit_amount_minor or 0)
        lines.add_row(
            line.sku,
            line.kind,
            str(line.quantity_added),
            str(line.quantity_after),
            "yes" if line.new_line else "",
            unit,
            line.reason or "",
        )
    console.print(lines)
    schedule = Table(title=f"Invoices after the amendment ({code})", title_justify="left")
    for column in ("#", "date", "period", "lines", "total"):
        schedule.add_column(column)
    for number, invoice in enumerate(priced.invoices, start=1):
        schedule.add_row(
            str(number),
            invoice.date.isoformat(),
            f"{invoice.period_start} → {invoice.period_end}",
            ", ".join(f"{item.quantity} {item.sku} ({item.kind})" for item in invoice.lines),
            money(invoice.total_minor),
        )
    console.print(schedule)
    for label, amount in (
        ("MRR delta", priced.mrr_delta_minor),
        ("ARR delta", priced.arr_delta_minor),
        ("TCV delta", priced.tcv_delta_minor),
        ("Amendment invoice", priced.first_invoice_total_minor),
    ):
        console.print(f"{label}: {money(amount)} {code}")


def _money(currency: str) -> Callable[[int], str]:
    def show(amount_minor: int) -> str:
        return format_minor(amount_minor, currency, with_code=False)

    return show
