"""The ``qtc`` command line: one typer app, each command group in its own module."""

from __future__ import annotations

import os
import sys
from importlib.metadata import entry_points

import typer

from starters import cli_deal, cli_quote, cli_serve

# Commands that other installed packages add to ``qtc``: the sandbox adds ``demo``, ``sandbox``
# and ``sign`` this way, so the product never imports the emulators and an image built without
# them simply has no such commands.
PLUGIN_GROUP = "qtc.cli"

app = typer.Typer(
    name="qtc",
    help="Quote-to-Cash on Temporal: price quotes, run deals, review invoices.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(cli_quote.app, name="quote")
app.command("serve")(cli_serve.serve)
app.command("worker")(cli_deal.worker)
app.add_typer(cli_deal.app, name="deal")
app.add_typer(cli_deal.review_app, name="review")


def _add_plugins(target: typer.Typer) -> None:
    for plugin in entry_points(group=PLUGIN_GROUP):
        try:
            register = plugin.load()
        except ModuleNotFoundError:
            continue  # declared by the package metadata but not shipped (the production image)
        register(target)


_add_plugins(app)


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
