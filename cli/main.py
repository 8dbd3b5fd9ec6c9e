"""The `gatekey` command: command groups assembled, errors turned into one line."""

from __future__ import annotations

import typer

from cli import db, keys, selftest, serve
from cli.common import clean_errors

app = typer.Typer(
    name="gatekey",
    help="gatekey: API keys, exact rate limits, usage and a production self-test.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(keys.app, name="keys")
app.add_typer(db.app, name="db")
app.command("serve")(serve.serve)
app.command("preflight")(selftest.preflight)
app.command("selftest")(selftest.selftest)


def main() -> None:
    with clean_errors():
        app()
