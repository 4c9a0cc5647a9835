"""``qtc worker``, ``qtc deal ...`` and ``qtc review ...``: run deals from a terminal.

Every command that reads something takes ``--json`` and then prints exactly one JSON document on
stdout. Failures print one line on stderr, never a traceback.

Exit codes: 0 done; 1 Temporal unreachable, or an input that cannot be used (file, catalog, CRM
record); 2 the quote is rejected (the errors JSON on stdout, as ``qtc quote price``); 3 no such
deal; 4 the request contradicts the deal (another quote for the same opportunity, a finished deal,
a review for a deal that is not awaiting one).

Who acts: commands that record a person on the deal (``--as``) default to the operating-system user
name. In a shared terminal set ``--as you@company.example`` so the deal's history names you, not
the machine account. The HTTP API, not this command line, is where roles are enforced.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar, cast, get_args

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.service import RPCError, RPCStatusCode

from qtc import deal as contract
from qtc import ports
from qtc.amendments import PricedAmendment, amendment_to_json
from qtc.catalog import load_catalog
from qtc.cpq import MAX_QUOTE_BYTES, price_quote, violations_to_json
from qtc.deal import DealStatus, InvoiceReview, MarkLost, Phase, Resume, Stage
from qtc.errors import CatalogError, QuoteRejected
from qtc.models import Catalog, PricedQuote, ScheduledInvoice
from qtc.money import format_minor
from runtime.logging import configure_logging
from runtime.settings import Settings, get_settings
from runtime.temporal import connect
from service import deals
from service.amendments import start_amendment

EXIT_FAILED = 1
EXIT_REJECTED = 2
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4
# Bad input to the command itself (a file that cannot be read or parsed): sysexits EX_USAGE, so
# it is never mistaken for a rejected quote (2).
EXIT_USAGE = 64

# Long enough for a loaded server, short enough that a wrong address fails within a breath.
CONNECT_TIMEOUT_S = 10.0
REVIEW_STAGE: Stage = "awaiting_invoice_review"
STAGE_KEY = SearchAttributeKey.for_keyword(ports.SA_STAGE)
STAGES: tuple[str, ...] = get_args(Stage)

T = TypeVar("T")

app = typer.Typer(
    help="Start, inspect and steer deals.", no_args_is_help=True, pretty_exceptions_enable=False
)
review_app = typer.Typer(
    help="Review first invoices (phase-2 deals).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
PhaseOption = Annotated[
    int, typer.Option("--phase", min=1, max=3, help="1: stop at Closed Won; 2: invoice review; 3.")
]
CatalogOption = Annotated[
    Path | None,
    typer.Option("--catalog", help="Catalog TOML; default QTC_CATALOG or catalog.toml."),
]
ActorOption = Annotated[
    str | None,
    typer.Option("--as", help="Who acts, recorded on the deal; default the OS user name."),
]
DealIdArgument = Annotated[
    str, typer.Argument(help="Deal id (deal-<opportunity id>) or the opportunity id.")
]


# --- plumbing -------------------------------------------------------------------------------


class _CliFailure(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def _fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    raise _CliFailure(message, code)


def _actor(value: str | None) -> str:
    return value or getpass.getuser()


def _deal_id(value: str) -> str:
    return value if value.startswith("deal-") else contract.deal_id_for(value)


def _echo_json(document: Any) -> None:
    typer.echo(json.dumps(document, indent=2, default=str))


def _run(settings: Settings, work: Callable[[Client], Awaitable[T]]) -> T:
    """Connect to Temporal, run ``work``; every expected failure becomes one line and a code."""

    async def main() -> T:
        address = settings.temporal_address
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                client = await connect(settings)
        except (RuntimeError, TimeoutError, RPCError) as exc:
            raise _CliFailure(f"cannot reach Temporal at {address}: {_first_line(exc)}") from exc
        try:
            return await work(client)
        except deals.TemporalUnavailable as exc:
            raise _CliFailure(f"cannot reach Temporal at {address}: {exc}") from exc

    try:
        return asyncio.run(main())
    except _CliFailure as failure:
        typer.echo(f"qtc: {failure}", err=True)
        raise typer.Exit(failure.code) from None
    except deals.DealNotFound as exc:
        typer.echo(f"qtc: {exc}", err=True)
        raise typer.Exit(EXIT_NOT_FOUND) from None
    except deals.DealConflict as exc:
        typer.echo(f"qtc: {exc}", err=True)
        raise typer.Exit(EXIT_CONFLICT) from None
    except deals.DealServiceError as exc:
        typer.echo(f"qtc: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:300]


def _load_catalog(path: Path | None, settings: Settings) -> Catalog:
    try:
        return load_catalog(path or settings.catalog)
    except CatalogError as exc:
        _exit(str(exc))


def _exit(message: str, code: int = EXIT_FAILED) -> NoReturn:
    typer.echo(f"qtc: {message}", err=True)
    raise typer.Exit(code)


def _reject(exc: QuoteRejected, json_output: bool) -> NoReturn:
    _echo_json(violations_to_json(exc.violations))
    if not json_output:
        for violation in exc.violations:
            typer.echo(
                f"rejected: {violation.pointer or '(document)'}: {violation.code}: "
                f"{violation.message}",
                err=True,
            )
    raise typer.Exit(EXIT_REJECTED)


async def _stage(client: Client, deal_id: str) -> str | None:
    """The deal's ``QtcStage`` as the server holds it: answered without the worker."""
    try:
        async with asyncio.timeout(deals.DEFAULT_RPC_TIMEOUT.total_seconds()):
            description = await client.get_workflow_handle(deal_id).describe()
    except TimeoutError as exc:
        raise deals.TemporalUnavailable("Temporal did not answer in time") from exc
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise deals.DealNotFound(deal_id) from err
        raise deals.TemporalUnavailable(err.message) from err
    if description.close_time is not None:
        raise deals.DealFinished(deal_id)
    return description.typed_search_attributes.get(STAGE_KEY)


async def _send(
    client: Client, deal_id: str, signal: str, model: BaseModel, required_stage: str | None
) -> None:
    if required_stage is not None:
        stage = await _stage(client, deal_id)
        if stage != required_stage:
            _fail(f"deal {deal_id} is in stage {stage}, not {required_stage}", EXIT_CONFLICT)
    await deals.signal(client, deal_id, signal, model)


# --- qtc worker -----------------------------------------------------------------------------


def worker() -> None:
    """Run the deal worker (workflows and activities) until SIGTERM or Ctrl-C."""
    from workers.main import WorkerStartError, run_worker  # vendor SDKs load only in the worker

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    try:
        asyncio.run(run_worker(settings))
    except WorkerStartError as exc:
        _exit(str(exc))


# --- qtc deal -------------------------------------------------------------------------------


@app.command("start")
def start(
    file: Annotated[Path, typer.Argument(help="Quote JSON file (docs/architecture.md).")],
    phase: PhaseOption = 3,
    json_output: JsonOption = False,
    catalog: CatalogOption = None,
    actor: ActorOption = None,
) -> None:
    """Price FILE as of now and start its deal (or join the one already running for it)."""
    settings = get_settings()
    try:
        with file.open("rb") as handle:
            raw = handle.read(MAX_QUOTE_BYTES + 1)
    except OSError as exc:
        _exit(f"cannot read {file}: {exc.strerror or exc}")
    products = _load_catalog(catalog, settings)
    try:
        priced = price_quote(raw, products, datetime.now(UTC))
    except QuoteRejected as exc:
        _reject(exc, json_output)
    result = _run(
        settings,
        lambda client: deals.start_deal(
            client, settings, priced, phase=cast(Phase, phase), started_by=_actor(actor)
        ),
    )
    _print_started(result, priced, json_output)


@app.command("amend")
def amend(
    original: Annotated[str, typer.Argument(help="The deal amended (deal-<opportunity id>).")],
    file: Annotated[Path, typer.Argument(help="Amendment JSON file (docs/architecture.md).")],
    phase: PhaseOption = 3,
    json_output: JsonOption = False,
    catalog: CatalogOption = None,
    actor: ActorOption = None,
) -> None:
    """Price the amendment FILE against the billed deal ORIGINAL and start its deal: its own
    contract and signature, then the same billing customer, the subscription changed from the
    next period and the amendment invoice sent at once."""
    settings = get_settings()
    try:
        with file.open("rb") as handle:
            raw = handle.read(MAX_QUOTE_BYTES + 1)
    except OSError as exc:
        _exit(f"cannot read {file}: {exc.strerror or exc}")
    products = _load_catalog(catalog, settings)
    target = _deal_id(original)

    async def work(client: Client) -> tuple[deals.StartResult, PricedAmendment] | QuoteRejected:
        try:
            return await start_amendment(
                client,
                settings,
                target,
                raw,
                products,
                phase=cast(Phase, phase),
                started_by=_actor(actor),
            )
        except QuoteRejected as exc:
            return exc

    outcome = _run(settings, work)
    if isinstance(outcome, QuoteRejected):
        _reject(outcome, json_output)
    result, priced = outcome
    if json_output:
        _echo_json(
            {**result.model_dump(mode="json"), "priced_amendment": amendment_to_json(priced)}
        )
        return
    verb = "started" if result.created else "already running (joined)"
    typer.echo(
        f"{result.deal_id} {verb}: amends {target}, amendment invoice "
        f"{format_minor(priced.first_invoice_total_minor, priced.currency)} if signed today"
    )
    if priced.status == "needs_approval":
        typer.echo("the amendment needs deal-desk approval before the contract is sent")


@app.command("start-from-crm")
def start_from_crm(
    opportunity_id: Annotated[
        str, typer.Argument(help="The opportunity id in the CRM that QTC_CRM names.")
    ],
    phase: PhaseOption = 3,
    json_output: JsonOption = False,
    catalog: CatalogOption = None,
    actor: ActorOption = None,
) -> None:
    """Read OPPORTUNITY_ID from the CRM, price it and start its deal (the Closed-Won starter)."""
    from service.crm import OpportunityUnavailable
    from service.crm import start_from_crm as start_deal_from_crm
    from workers.compose import LazyCrmReader

    settings = get_settings()
    products = _load_catalog(catalog, settings)
    crm = LazyCrmReader(settings)
    try:
        result = _run(
            settings,
            lambda client: start_deal_from_crm(
                client,
                settings,
                crm,
                products,
                opportunity_id,
                phase=cast(Phase, phase),
                started_by=_actor(actor),
            ),
        )
    except QuoteRejected as exc:
        _note_refusal(crm, opportunity_id, _violation_lines(exc))
        _reject(exc, json_output)
    except OpportunityUnavailable as exc:
        if exc.reason == "not_quotable":
            _note_refusal(crm, opportunity_id, str(exc))
        _exit(_first_line(exc))
    except ValueError as exc:
        _exit(f"the CRM ({settings.crm}) is not configured: {_first_line(exc)}")
    finally:
        crm.close()
    _print_started(result, None, json_output)


def _violation_lines(exc: QuoteRejected) -> str:
    return "The quote breaks CPQ rules:\n" + "\n".join(
        f"{v.pointer or '(document)'}: {v.code}: {v.message}" for v in exc.violations
    )


def _note_refusal(crm: ports.CrmReader, opportunity_id: str, reason: str) -> None:
    """Leave the reason on the CRM record too (HubSpot takes notes), where sales will see it."""
    from service.crm import OpportunityUnavailable, note_refusal

    try:
        note = asyncio.run(note_refusal(crm, opportunity_id, reason))
    except OpportunityUnavailable as err:
        typer.echo(f"qtc: the CRM did not take the note: {_first_line(err)}", err=True)
        return
    if note is not None:
        typer.echo(f"note {note} left on {opportunity_id} in the CRM", err=True)


def _print_started(result: deals.StartResult, priced: PricedQuote | None, as_json: bool) -> None:
    if as_json:
        _echo_json(result.model_dump(mode="json"))
        return
    verb = "started" if result.created else "already running (joined)"
    typer.echo(f"{result.deal_id} {verb}")
    if priced is not None and priced.status == "needs_approval":
        typer.echo("the quote needs deal-desk approval before the contract is sent")


@app.command("status")
def status(deal_id: DealIdArgument, json_output: JsonOption = False) -> None:
    """Stage, stage history, envelope and Stripe ids, invoice preview and last error of a deal."""
    settings = get_settings()
    found = _run(settings, lambda client: deals.get_status(client, _deal_id(deal_id)))
    if json_output:
        _echo_json(found.model_dump(mode="json"))
    else:
        _print_status(found)


@app.command("list")
def list_(
    stage: Annotated[
        str | None, typer.Option("--stage", help=f"Only deals in this stage ({', '.join(STAGES)}).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 100,
    json_output: JsonOption = False,
) -> None:
    """Deals newest first, from Temporal visibility (what the Web UI shows)."""
    if stage is not None and stage not in STAGES:
        _exit(f"unknown stage {stage!r}; one of: {', '.join(STAGES)}")
    settings = get_settings()
    rows = _run(settings, lambda client: deals.list_deals(client, cast(Stage | None, stage), limit))
    if json_output:
        _echo_json({"deals": [row.model_dump(mode="json") for row in rows]})
        return
    table = Table(title=f"Deals{f' in {stage}' if stage else ''}", title_justify="left")
    # Ids are what an operator copies into the next command: never cut or wrapped.
    table.add_column("deal", no_wrap=True, overflow="fold", min_width=24)
    for column in ("customer", "stage", "blocked on", "phase", "ARR", "workflow", "started"):
        table.add_column(column)
    for row in rows:
        blocked = f"{row.blocked_step} ({row.error_type})" if row.blocked_step else ""
        arr = f"{row.arr:,.2f} {row.currency or ''}".strip() if row.arr is not None else ""
        table.add_row(
            row.deal_id,
            row.customer or "",
            row.stage or "",
            blocked,
            str(row.phase or ""),
            arr,
            row.status,
            row.started_at.isoformat(timespec="seconds") if row.started_at else "",
        )
    # Off a terminal rich would wrap at 80 columns and cut the ids into pieces.
    Console(width=None if sys.stdout.isatty() else 250).print(table)


@app.command("resume")
def resume(
    deal_id: DealIdArgument,
    note: Annotated[str | None, typer.Option("--note", help="Why it is safe to retry now.")] = None,
    actor: ActorOption = None,
) -> None:
    """Retry the step that parked a deal in needs_attention."""
    target = _deal_id(deal_id)
    request = Resume(by=_actor(actor), note=note)
    _run(
        get_settings(),
        lambda client: _send(client, target, contract.SIGNAL_RESUME, request, "needs_attention"),
    )
    typer.echo(f"{target}: resume sent")


@app.command("correct")
def correct(
    deal_id: DealIdArgument,
    account: Annotated[
        Path,
        typer.Option(
            "--account",
            help='JSON file with the corrected legal entity (the quote\'s "account" object).',
            dir_okay=False,
        ),
    ],
    reason: Annotated[str, typer.Option("--reason", help="Why, recorded on the deal.")],
    actor: ActorOption = None,
) -> None:
    """Correct the signed legal entity of a deal parked in needs_attention, then resume it."""
    from pydantic import ValidationError

    from qtc.deal import AccountCorrection
    from qtc.models import Account

    try:
        corrected = Account.model_validate_json(account.read_bytes())
    except OSError as exc:
        _exit(f"cannot read {account}: {exc.strerror}", EXIT_USAGE)
    except ValidationError as exc:
        problems = "; ".join(
            f"/account/{'/'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        _exit(f"{account} is not a valid account: {problems}", EXIT_USAGE)
    target = _deal_id(deal_id)
    request = AccountCorrection(by=_actor(actor), reason=reason, account=corrected)
    answer = _run(get_settings(), lambda client: deals.correct_account(client, target, request))
    typer.echo(f"{target}: {answer.message or 'corrected'} (`qtc deal resume {target}`)")


@app.command("cancel")
def cancel(
    deal_id: DealIdArgument,
    reason: Annotated[str, typer.Option("--reason", help="Why, recorded on the deal.")],
    actor: ActorOption = None,
) -> None:
    """End a deal parked in needs_attention for good (voids an unsigned contract)."""
    from qtc.deal import Cancel

    target = _deal_id(deal_id)
    request = Cancel(by=_actor(actor), reason=reason)
    answer = _run(get_settings(), lambda client: deals.cancel(client, target, request))
    typer.echo(f"{target}: {answer.stage}: {answer.message or ''}".rstrip(": "))


@app.command("lost")
def lost(
    deal_id: DealIdArgument,
    reason: Annotated[str | None, typer.Option("--reason", help="Why the deal was lost.")] = None,
    actor: ActorOption = None,
) -> None:
    """Mark a deal lost (voids an unsigned contract; refused once billing has started)."""
    target = _deal_id(deal_id)
    request = MarkLost(by=_actor(actor), reason=reason)
    _run(
        get_settings(),
        lambda client: _send(client, target, contract.SIGNAL_MARK_LOST, request, None),
    )
    typer.echo(f"{target}: mark_lost sent (see `qtc deal status {target}` for the outcome)")


# --- qtc review -----------------------------------------------------------------------------


@review_app.command("list")
def review_list(json_output: JsonOption = False) -> None:
    """Deals waiting for a finance reviewer, with the first invoice each would send."""
    settings = get_settings()

    async def waiting(client: Client) -> list[DealStatus]:
        rows = await deals.list_deals(client, REVIEW_STAGE)
        statuses = await asyncio.gather(*(deals.get_status(client, r.deal_id) for r in rows))
        # Visibility lags the workflow a little: keep only deals still waiting right now.
        return [s for s in statuses if s.stage == REVIEW_STAGE]

    found = _run(settings, waiting)
    if json_output:
        _echo_json({"deals": [_review_row(s) for s in found]})
        return
    if not found:
        typer.echo("no deal is waiting for invoice review")
        return
    console = Console()
    for item in found:
        console.print(
            f"[bold]{item.deal_id}[/bold] {item.customer} ({item.quote_id}), "
            f"ARR {format_minor(item.arr_minor, item.currency)}"
        )
        if item.invoice_preview is not None:
            console.print(_invoice_table(item.invoice_preview, item.currency))
        if item.invoice_preview_total_minor is not None:
            console.print(
                f"with tax: {format_minor(item.invoice_preview_total_minor, item.currency)} "
                f"(tax {format_minor(item.invoice_preview_tax_minor or 0, item.currency)})"
            )


def _review_row(item: DealStatus) -> dict[str, Any]:
    return {
        "deal_id": item.deal_id,
        "opportunity_id": item.opportunity_id,
        "quote_id": item.quote_id,
        "customer": item.customer,
        "currency": item.currency,
        "arr_minor": item.arr_minor,
        "billing_customer_id": item.billing_customer_id,
        "invoice_preview": (
            item.invoice_preview.model_dump(mode="json") if item.invoice_preview else None
        ),
        "invoice_preview_tax_minor": item.invoice_preview_tax_minor,
        "invoice_preview_total_minor": item.invoice_preview_total_minor,
        "amends": item.amends,
    }


@review_app.command("approve")
def review_approve(
    deal_id: DealIdArgument,
    note: Annotated[str | None, typer.Option("--note", help="Recorded with the approval.")] = None,
    actor: ActorOption = None,
) -> None:
    """Approve the first invoice: the subscription is created and the invoice sent."""
    target = _deal_id(deal_id)
    review = InvoiceReview(reviewer=_actor(actor), note=note)
    _run(
        get_settings(),
        lambda client: _send(client, target, contract.SIGNAL_APPROVE_INVOICE, review, REVIEW_STAGE),
    )
    typer.echo(f"{target}: invoice approved by {review.reviewer}")


@review_app.command("reject")
def review_reject(
    deal_id: DealIdArgument,
    reason: Annotated[str, typer.Option("--reason", help="Why; recorded on the deal.")],
    actor: ActorOption = None,
) -> None:
    """Reject the first invoice: the deal ends in review_rejected, nothing is billed."""
    target = _deal_id(deal_id)
    review = InvoiceReview(reviewer=_actor(actor), note=reason)
    _run(
        get_settings(),
        lambda client: _send(client, target, contract.SIGNAL_REJECT_INVOICE, review, REVIEW_STAGE),
    )
    typer.echo(f"{target}: invoice rejected by {review.reviewer}")


# --- human output ---------------------------------------------------------------------------


def _print_status(item: DealStatus) -> None:
    console = Console()
    console.print(
        f"[bold]{item.deal_id}[/bold] {item.customer} ({item.quote_id}), phase {item.phase}, "
        f"ARR {format_minor(item.arr_minor, item.currency)}"
    )
    console.print(f"Stage: [bold]{item.stage}[/bold]")
    ids = Table(show_header=False, title="External ids", title_justify="left")
    ids.add_column("what")
    ids.add_column("id", overflow="fold")
    for label, value in (
        ("DocuSign envelope", item.envelope_id),
        ("Billing customer", item.billing_customer_id),
        ("Billing subscription", item.billing_subscription_id),
        ("Billing schedule", item.billing_schedule_id),
        ("Billing invoice", item.billing_invoice_id),
        ("Invoice number", item.invoice_number),
        ("Invoice URL", item.billing_invoice_url),
        (f"ERP customer ({item.erp})", item.erp_customer_id),
        (f"ERP invoice ({item.erp})", item.erp_invoice_id),
    ):
        if value:
            ids.add_row(label, value)
    if ids.row_count:
        console.print(ids)
    history = Table(title="Stage history", title_justify="left")
    for column in ("at (UTC)", "stage", "note"):
        history.add_column(column, overflow="fold")
    for entry in item.stage_history:
        history.add_row(entry.at.isoformat(timespec="seconds"), entry.stage, entry.note or "")
    console.print(history)
    if item.invoice_preview is not None:
        console.print(_invoice_table(item.invoice_preview, item.currency))
    if item.invoice_preview_total_minor is not None:
        console.print(
            f"Under review, with tax: total "
            f"{format_minor(item.invoice_preview_total_minor, item.currency)} (tax "
            f"{format_minor(item.invoice_preview_tax_minor or 0, item.currency)})"
        )
    if item.invoice_total_minor is not None:
        net = item.invoice_total_excluding_tax_minor
        console.print(
            f"Invoice as issued: total {format_minor(item.invoice_total_minor, item.currency)}"
            + (
                f" (excluding tax {format_minor(net, item.currency)}, tax "
                f"{format_minor(item.invoice_tax_minor or 0, item.currency)})"
                if net is not None
                else ""
            )
        )
    if item.last_error is not None:
        error = item.last_error
        console.print(
            f"[red]Last error[/red] in {error.step} ({error.type}) at "
            f"{error.at.isoformat(timespec='seconds')}: {error.message}"
        )
    for note in item.notes[-5:]:
        console.print(f"[dim]{note.at.isoformat(timespec='seconds')} {note.kind}: {note.message}")


def _invoice_table(invoice: ScheduledInvoice, currency: str) -> Table:
    table = Table(
        title=f"First invoice {invoice.date} ({invoice.period_start} → {invoice.period_end})",
        title_justify="left",
    )
    for column in ("SKU", "kind", "qty", "unit", "amount"):
        table.add_column(column, justify="left" if column in ("SKU", "kind") else "right")
    for line in invoice.lines:
        table.add_row(
            line.sku,
            line.kind,
            str(line.quantity),
            format_minor(line.unit_amount_minor, currency),
            format_minor(line.amount_minor, currency),
        )
    table.add_row("", "", "", "total", format_minor(invoice.total_minor, currency))
    return table
