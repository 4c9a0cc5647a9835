"""The ``qtc`` command line: one typer app, each command group in its own module."""

from __future__ import annotations

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
    app()


if __name__ == "__main__":
    main()
