"""``qtc demo``: the sample deals through the whole product on the embedded sandbox."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from runtime.logging import configure_logging
from runtime.settings import get_settings
from sandbox.demo import DemoError, run_demo
from sandbox.stack import StackError


def demo(
    examples: Annotated[
        Path, typer.Option(help="Folder with the sample quotes", file_okay=False)
    ] = Path("examples"),
    keep_up: Annotated[
        bool | None,
        typer.Option(
            "--keep-up/--no-keep-up",
            help="Keep the stack running after the table (default: only on a terminal)",
        ),
    ] = None,
) -> None:
    """Start the sandbox stack and run the sample deals end to end."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    # Off a terminal (CI, a pipe) rich would wrap the result table at 80 columns.
    console = Console() if sys.stdout.isatty() else Console(width=200)
    try:
        code = run_demo(settings, examples, console, keep_up=keep_up)
    except (StackError, DemoError, OSError) as exc:
        console.print(f"[red]demo failed:[/] {exc}")
        raise typer.Exit(1) from exc
    raise typer.Exit(code)
