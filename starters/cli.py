"""The ``qtc`` command line: one typer app, each command group in its own module."""

from __future__ import annotations

import typer

from starters import cli_quote

app = typer.Typer(
    name="qtc",
    help="Quote-to-Cash on Temporal: price quotes, run deals, review invoices.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(cli_quote.app, name="quote")


def main() -> None:
    app()
