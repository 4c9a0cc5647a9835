"""The ``qtc`` command line: one typer app, each command group in its own module."""

from __future__ import annotations

import os
import sys

import typer

from starters import cli_deal, cli_demo, cli_quote, cli_sandbox, cli_serve, cli_sign

app = typer.Typer(
    name="qtc",
    help="Quote-to-Cash on Temporal: price quotes, run deals, review invoices.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(cli_quote.app, name="quote")
app.add_typer(cli_sandbox.app, name="sandbox")
app.command("sign")(cli_sign.sign)
app.command("serve")(cli_serve.serve)
app.command("worker")(cli_deal.worker)
app.add_typer(cli_deal.app, name="deal")
app.add_typer(cli_deal.review_app, name="review")
app.command("demo")(cli_demo.demo)


def main() -> None:
    """Run the CLI, then leave without interpreter finalization.

    The Temporal client's Rust runtime keeps threads that can race CPython's finalization and abort
    the process (SIGABRT/SIGSEGV after the command already succeeded; measured here in about half
    of short runs that connected to Temporal). Every command has finished its own clean-up when
    ``app`` returns, so exiting with ``os._exit`` loses nothing.
    """
    try:
        app()
        code: int = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
