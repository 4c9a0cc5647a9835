"""The sandbox's ``qtc`` commands (``demo``, ``sandbox``, ``sign``), added through the ``qtc.cli``
entry point so that product code never imports the emulators."""

from __future__ import annotations

import typer

from sandbox import cli_demo, cli_sandbox, cli_sign


def register(app: typer.Typer) -> None:
    """Add the sandbox commands to the ``qtc`` app."""
    app.add_typer(cli_sandbox.app, name="sandbox")
    app.command("sign")(cli_sign.sign)
    app.command("demo")(cli_demo.demo)
