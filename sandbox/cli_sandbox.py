"""``qtc sandbox``: local stand-ins for Stripe, Salesforce, DocuSign, the product backend and
HubSpot and Ironclad.

The emulators are imported inside the command, so every other ``qtc`` command starts without
loading four web apps.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from runtime.logging import configure_logging
from runtime.settings import (
    PORT_SPAN,
    SANDBOX_SECRETS,
    SANDBOX_SLACK_BOT_TOKEN,
    SANDBOX_TOKENS,
    Settings,
    get_settings,
    load_settings,
)
from sandbox.stack import (
    Stack,
    StackError,
    disagreements,
    stop_on_signals,
    with_hubspot_beside,
)

if TYPE_CHECKING:
    from sandbox.runner import RunningEmulators

app = typer.Typer(
    help="The local sandbox: emulators of Stripe, Salesforce, DocuSign, the product backend, "
    "HubSpot, NetSuite and Ironclad.",
    no_args_is_help=True,
)


_NETSUITE_NOTE = (
    "account SANDBOX; TBA consumer sandbox-ns-consumer-key / sandbox-ns-consumer-secret, "
    "token sandbox-ns-token-id / sandbox-ns-token-secret; used when QTC_ERP=netsuite"
)


def _addresses(
    emulators: RunningEmulators, connect_url: str, hubspot_url: str, ironclad_webhook_url: str
) -> Table:
    from sandbox.salesforce.app import SANDBOX_SESSION_ID

    table = Table(title="QTC sandbox emulators", title_justify="left")
    table.add_column("emulator", no_wrap=True)
    table.add_column("address", no_wrap=True)
    table.add_column("credentials and notes")
    table.add_row("stripe", emulators.stripe_url, f"API key {SANDBOX_SECRETS['stripe_api_key']}")
    table.add_row(
        "salesforce",
        emulators.salesforce_url,
        f"session id {SANDBOX_SESSION_ID}; TLS CA {emulators.salesforce_ca_file}",
    )
    table.add_row(
        "docusign",
        emulators.docusign_url,
        f"Connect HMAC secret {SANDBOX_SECRETS['docusign_connect_secret']}; "
        f"delivers to {connect_url}",
    )
    table.add_row(
        "provisioning",
        emulators.provisioning_url,
        f"signing secret {SANDBOX_SECRETS['provisioning_secret']}",
    )
    table.add_row(
        "hubspot",
        emulators.hubspot_url,
        f"private-app token {SANDBOX_SECRETS['hubspot_access_token']}; webhooks signed (v3) with "
        f"{SANDBOX_SECRETS['hubspot_client_secret']}, delivered to {hubspot_url}",
        "ironclad",
        emulators.ironclad_url,
        f"API key {SANDBOX_SECRETS['ironclad_api_key']}; template sandbox-order-form; "
        f"webhooks (RSA-signed) to {ironclad_webhook_url}",
    )
    table.add_row("netsuite", emulators.netsuite_url, _NETSUITE_NOTE)
    table.add_row(
        "chargebee",
        f"{emulators.chargebee_url}/api/v2",
        f"site sandbox, API key {SANDBOX_SECRETS['chargebee_api_key']}",
        "slack",
        f"{emulators.slack_url}/api/",
        f"bot token {SANDBOX_SLACK_BOT_TOKEN}; received: /_sandbox/messages",
    )
    table.add_row(
        "smtp sink",
        f"{emulators.smtp_host}:{emulators.smtp_port}",
        f"received: {emulators.slack_url}/_sandbox/mail",
    )
    return table


def _stack_addresses(stack: Stack) -> Table:
    s = stack.settings
    api = s.api_public_url.rstrip("/")
    table = Table(title="QTC sandbox", title_justify="left")
    table.add_column("part", no_wrap=True)
    table.add_column("address", no_wrap=True)
    table.add_column("credentials and notes")
    table.add_row("Temporal Web UI", stack.web_ui_url, "every deal, with QtcStage/QtcCustomer/...")
    table.add_row("Temporal frontend", s.temporal_address, f"SQLite {stack.state_dir}/temporal.db")
    table.add_row("QTC API", f"{api}/docs", "tokens " + ", ".join(SANDBOX_TOKENS))
    table.add_row(
        "stripe", f"http://{s.sandbox_host}:{s.sandbox_stripe_port}", "API key sk_test_sandbox"
    )
    table.add_row(
        "salesforce",
        f"https://{s.sandbox_host}:{s.sandbox_salesforce_port}",
        "session id sandbox-session; TLS with the sandbox's own CA",
    )
    table.add_row(
        "docusign",
        f"http://{s.sandbox_host}:{s.sandbox_docusign_port}",
        f"Connect delivers to {api}/webhooks/docusign; sign with `qtc sign ENVELOPE_ID`",
    )
    table.add_row(
        "provisioning",
        f"http://{s.sandbox_host}:{s.sandbox_provisioning_port}",
        f"signing secret {SANDBOX_SECRETS['provisioning_secret']}",
    )
    table.add_row(
        "hubspot",
        f"http://{s.sandbox_host}:{s.sandbox_hubspot_port}",
        f"token {SANDBOX_SECRETS['hubspot_access_token']}; a deal moved to one of "
        f"{', '.join(s.hubspot_start_stages)} reaches {api}/webhooks/hubspot",
        "ironclad",
        f"http://{s.sandbox_host}:{s.sandbox_ironclad_port}",
        f"API key {SANDBOX_SECRETS['ironclad_api_key']}; webhooks to {api}/webhooks/ironclad; "
        "used with QTC_ESIGN=ironclad; sign with `qtc sign WORKFLOW_ID`",
    )
    table.add_row("netsuite", f"http://{s.sandbox_host}:{s.sandbox_netsuite_port}", _NETSUITE_NOTE)
    table.add_row(
        "chargebee",
        f"http://{s.sandbox_host}:{s.sandbox_chargebee_port}/api/v2",
        f"site {s.chargebee_site}, API key {SANDBOX_SECRETS['chargebee_api_key']}"
        + ("; the billing system (QTC_BILLING)" if s.billing == "chargebee" else ""),
        "review pages",
        f"{api}/review",
        "sign in with a deal-desk/finance/operator token",
    )
    slack = f"http://{s.sandbox_host}:{s.sandbox_slack_port}"
    table.add_row(
        "slack", f"{slack}/api/", f"bot token xoxb-sandbox; received: {slack}/_sandbox/messages"
    )
    table.add_row(
        "smtp sink",
        f"{s.sandbox_host}:{s.sandbox_smtp_port}",
        f"received: {slack}/_sandbox/mail",
    )
    return table


PortBaseOption = Annotated[
    int | None,
    typer.Option(
        "--port-base",
        min=1024,
        max=65535 - PORT_SPAN,
        help="Move the whole stack: Temporal on BASE, its Web UI BASE+1, the API BASE+2, the "
        "emulators BASE+11..., worker metrics BASE+21 (as QTC_PORT_BASE; explicit QTC_*_PORT "
        "settings still win). Default: the standard ports.",
    ),
]


def settings_for(port_base: int | None) -> Settings:
    """The settings, with ``--port-base`` applied when given."""
    return load_settings(port_base=port_base) if port_base is not None else get_settings()


def warn_disagreements(console: Console, settings: Settings) -> None:
    """Say which settings make the parts of the stack miss each other (deals would hang)."""
    problems = disagreements(settings)
    if problems:
        console.print(
            "[bold yellow]These settings do not point at each other; deals will wait at "
            "contract_sent until they do (set QTC_PORT_BASE alone, or each URL too):[/]"
        )
        for problem in problems:
            console.print(f"[yellow]  - {problem}[/]")


@app.command()
def up(
    state_dir: Annotated[
        Path | None,
        typer.Option(
            # No square brackets: the help is rich markup, which would swallow them.
            help="Where the stack keeps its Temporal database, emulator state and logs. "
            "Default: <QTC_STATE_DIR>/sandbox, that is .qtc/sandbox (with --emulators-only: "
            "<QTC_STATE_DIR>/emulators). The emulators' TLS CA is always under "
            "<QTC_STATE_DIR>/emulators/tls, where other qtc commands find it.",
        ),
    ] = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Start from seed data and keep nothing on disk.")
    ] = False,
    emulators_only: Annotated[
        bool,
        typer.Option("--emulators-only", help="Only the emulators: no Temporal, worker or API."),
    ] = False,
    port_base: PortBaseOption = None,
) -> None:
    """Run the sandbox in the foreground until Ctrl-C, SIGTERM or a closed terminal (SIGHUP): the
    Temporal dev server with its Web UI, the emulators, the worker and the API. Every way of
    stopping stops every process it started."""
    settings = settings_for(port_base)
    if not emulators_only:
        _up_stack(settings, state_dir, fresh)
        return
    from sandbox.runner import (
        EmulatorPorts,
        EmulatorStartError,
        default_connect_url,
        default_hubspot_webhook_url,
        default_ironclad_webhook_url,
        default_state_dir,
        start_emulators,
    )

    configure_logging(settings.log_level, settings.log_json)
    console = Console()
    connect_url = default_connect_url(settings)
    hubspot_url = default_hubspot_webhook_url(settings)
    ironclad_webhook_url = default_ironclad_webhook_url(settings)
    directory = state_dir or default_state_dir(settings)
    with stop_on_signals():
        try:
            emulators = start_emulators(
                directory,
                host=settings.sandbox_host,
                ports=EmulatorPorts.from_settings(settings),
                connect_url=connect_url,
                hubspot_webhook_url=hubspot_url,
                ironclad_webhook_url=ironclad_webhook_url,
                persist=not fresh,
                access_log=True,
                tls_dir=default_state_dir(settings) / "tls",
            )
        except EmulatorStartError as exc:
            console.print(f"[bold red]sandbox did not start:[/] {exc}")
            raise typer.Exit(code=1) from exc
        _serve_emulators(
            emulators, console, (connect_url, hubspot_url, ironclad_webhook_url), directory, fresh
        )
    console.print("Sandbox stopped.")


def _serve_emulators(
    emulators: RunningEmulators,
    console: Console,
    webhook_urls: tuple[str, str, str],
    directory: Path,
    fresh: bool,
) -> None:
    connect_url, hubspot_url, ironclad_webhook_url = webhook_urls
    from sandbox.runner import wait_for_stop_signal

    with emulators:
        console.print(_addresses(emulators, connect_url, hubspot_url, ironclad_webhook_url))
        kept = "in memory only (--fresh)" if fresh else f"written through to {directory}"
        console.print(f"State is {kept}. Reset one with POST <address>/_sandbox/reset.")
        console.print("Press Ctrl-C to stop.")
        wait_for_stop_signal()


def _up_stack(settings: Settings, state_dir: Path | None, fresh: bool) -> None:
    from sandbox.runner import wait_for_stop_signal

    settings = with_hubspot_beside(settings)
    configure_logging(settings.log_level, settings.log_json)
    console = Console()
    stack = Stack(
        settings,
        state_dir or settings.state_dir / "sandbox",
        persist_temporal=not fresh,
        persist_emulators=not fresh,
    )
    warn_disagreements(console, settings)
    console.print("Starting Temporal dev server, emulators, worker and API ...")
    with stop_on_signals():
        try:
            stack.start()
        except StackError as exc:
            console.print(f"[bold red]sandbox did not start:[/] {exc}")
            raise typer.Exit(code=1) from exc
        try:
            console.print(_stack_addresses(stack))
            console.print(f"Logs in {stack.state_dir / 'logs'}. Press Ctrl-C to stop.")
            wait_for_stop_signal()
        finally:
            stack.stop()
    console.print("Sandbox stopped.")
