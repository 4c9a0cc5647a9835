"""``qtc sign ENVELOPE_ID``: play the customer's signer against the sandbox DocuSign emulator.

The emulator completes the envelope and delivers DocuSign Connect's ``envelope-completed`` event
to the product's webhook in the background, exactly as a real signature would arrive. Sandbox
only: against a real DocuSign account a signature must come from the real signer.

Exit codes: 0 signed, 1 refused or failed (one line on stderr). Never a traceback.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console

from runtime.settings import Settings, get_settings

EXIT_FAILED = 1
TIMEOUT_S = 10.0


def sign(
    envelope_id: Annotated[str, typer.Argument(help="The DocuSign envelope id of the contract.")],
    docusign_url: Annotated[
        str | None,
        typer.Option(
            "--docusign-url",
            help="DocuSign emulator address; default QTC_DOCUSIGN_BASE_PATH without /restapi.",
        ),
    ] = None,
    signed_at: Annotated[
        str | None,
        typer.Option(
            "--signed-at",
            help="Signature time, ISO 8601 (e.g. 2026-12-15T10:00:00Z); default now, UTC if "
            "no offset is given.",
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the emulator's answer as one JSON document.")
    ] = False,
) -> None:
    """Sign ENVELOPE_ID in the sandbox (the signature arrives through the Connect webhook)."""
    settings = get_settings()
    if not settings.sandbox:
        _fail(
            "refused: signing on someone's behalf exists only in the sandbox (QTC_ENV=sandbox); "
            f"QTC_ENV is {settings.env!r}"
        )
    base = (docusign_url or emulator_url(settings)).rstrip("/")
    body: dict[str, Any] = {}
    if signed_at is not None:
        body["signed_at"] = _iso(signed_at)
    url = f"{base}/_sandbox/envelopes/{envelope_id}/sign"
    try:
        response = httpx.post(url, json=body, timeout=TIMEOUT_S)
    except httpx.HTTPError as exc:
        _fail(f"cannot reach the DocuSign emulator at {base} ({exc}); is `qtc sandbox up` running?")
    answer = _json(response)
    if response.status_code != 200:
        message = answer.get("message") or response.text[:200]
        code = answer.get("errorCode", f"HTTP {response.status_code}")
        _fail(f"envelope {envelope_id} not signed: {code}: {message}")
    if json_output:
        typer.echo(json.dumps(answer, indent=2))
        return
    console = Console()
    console.print(
        f"[green]signed[/green] envelope [bold]{answer['envelopeId']}[/bold] "
        f"at {answer['completedDateTime']}"
    )
    deliveries = answer.get("deliveries") or []
    if deliveries:
        for delivery in deliveries:
            console.print(f"Connect envelope-completed queued for {delivery['url']}")
    else:
        console.print(
            "[yellow]no Connect listener is configured; the deal will not hear of it[/yellow]"
        )


def emulator_url(settings: Settings) -> str:
    """The emulator's root: the DocuSign REST base path without its ``/restapi`` suffix."""
    return settings.docusign_base_path.rstrip("/").removesuffix("/restapi")


def _iso(value: str) -> str:
    try:
        return datetime.fromisoformat(value).isoformat()
    except ValueError:
        _fail(f"--signed-at: {value!r} is not an ISO 8601 time such as 2026-12-15T10:00:00Z")


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _fail(message: str) -> NoReturn:
    typer.echo(f"qtc sign: {message}", err=True)
    raise typer.Exit(EXIT_FAILED)
