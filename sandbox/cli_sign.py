"""``qtc sign ENVELOPE_ID``: play the customer's signer against the sandbox DocuSign or Ironclad
emulator.

The emulator completes the envelope (DocuSign) or workflow (Ironclad) and delivers the vendor's
webhook (Connect's ``envelope-completed``; Ironclad's RSA-signed ``workflow_completed``) to the
product in the background, exactly as a real signature would arrive. Sandbox only: against a real
account a signature must come from the real signer.

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
_NAMES = {"docusign": "DocuSign", "ironclad": "Ironclad"}
TIMEOUT_S = 10.0


def sign(
    envelope_id: Annotated[
        str,
        typer.Argument(
            help="The contract's id: a DocuSign envelope id or an Ironclad workflow id."
        ),
    ],
    docusign_url: Annotated[
        str | None,
        typer.Option(
            "--docusign-url",
            help="DocuSign emulator address; default QTC_DOCUSIGN_BASE_PATH without /restapi.",
        ),
    ] = None,
    ironclad_url: Annotated[
        str | None,
        typer.Option(
            "--ironclad-url", help="Ironclad emulator address; default QTC_IRONCLAD_BASE_URL."
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
    """Sign ENVELOPE_ID in the sandbox (the signature arrives through the vendor's webhook).

    The e-signature emulator QTC_ESIGN names is asked first; an id it does not know is tried at
    the other one, so a workflow id signs at Ironclad whatever the shell's QTC_ESIGN says.
    """
    settings = get_settings()
    if not settings.sandbox:
        _fail(
            "refused: signing on someone's behalf exists only in the sandbox (QTC_ENV=sandbox); "
            f"QTC_ENV is {settings.env!r}"
        )
    body: dict[str, Any] = {}
    if signed_at is not None:
        body["signed_at"] = _iso(signed_at)
    targets = {
        "docusign": (docusign_url or emulator_url(settings)).rstrip("/"),
        "ironclad": (ironclad_url or settings.ironclad_base_url).rstrip("/"),
    }
    order = sorted(targets, key=lambda name: name != settings.esign)
    first = order[0]
    response = _post(targets[first], envelope_id, body, first)
    if response is None:
        _fail(
            f"cannot reach the {_NAMES[first]} emulator at {targets[first]}; "
            "is `qtc sandbox up` running?"
        )
    name = first
    if response.status_code == 404:
        # Not an id the configured emulator knows: perhaps the other vendor's contract.
        other = order[1]
        fallback = _post(targets[other], envelope_id, body, other)
        if fallback is not None and fallback.status_code != 404:
            response, name = fallback, other
    answer = _json(response)
    if response.status_code != 200:
        message = answer.get("message") or response.text[:200]
        code = answer.get("errorCode") or answer.get("code") or f"HTTP {response.status_code}"
        _fail(f"{envelope_id} not signed: {code}: {message}")
    if json_output:
        typer.echo(json.dumps(answer, indent=2))
        return
    _report(name, answer)


def _post(base: str, envelope_id: str, body: dict[str, Any], name: str) -> httpx.Response | None:
    path = (
        f"/_sandbox/workflows/{envelope_id}/sign"
        if name == "ironclad"
        else f"/_sandbox/envelopes/{envelope_id}/sign"
    )
    try:
        return httpx.post(f"{base}{path}", json=body, timeout=TIMEOUT_S)
    except httpx.HTTPError:
        return None


def _report(name: str, answer: dict[str, Any]) -> None:
    console = Console()
    if name == "ironclad":
        console.print(
            f"[green]signed[/green] Ironclad workflow [bold]{answer['workflowId']}[/bold] "
            f"at {answer['signedAt']}"
        )
        event = "Ironclad workflow_completed"
    else:
        console.print(
            f"[green]signed[/green] envelope [bold]{answer['envelopeId']}[/bold] "
            f"at {answer['completedDateTime']}"
        )
        event = "Connect envelope-completed"
    deliveries = answer.get("deliveries") or []
    if deliveries:
        for delivery in deliveries:
            console.print(f"{event} queued for {delivery['url']}")
    else:
        console.print(
            "[yellow]no webhook listener is configured; the deal will not hear of it[/yellow]"
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
