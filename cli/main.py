"""The `gatekey` command: command groups assembled, errors turned into one line."""

from __future__ import annotations

import signal
from importlib.metadata import version
from typing import Annotated

import typer

# typer vendors click since 0.22; these are the classes its parser raises (not `click`'s own).
# typer exports them under no public name; tests/unit/test_library_contracts.py checks them.
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

from cli import audit, db, keys, owners, selftest, serve, usage
from cli.common import EXIT_USAGE, clean_errors, console, fail

app = typer.Typer(
    name="gatekey",
    help="gatekey: API keys, exact rate limits, usage and a production self-test.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _print_version(requested: bool) -> None:
    if requested:
        console.print(f"gatekey {version('gatekey')}", highlight=False)
        raise typer.Exit


@app.callback()
def root(
    _version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """gatekey: API keys, exact rate limits, usage and a production self-test."""


app.add_typer(keys.app, name="keys")
app.add_typer(db.app, name="db")
app.add_typer(audit.app, name="audit")
app.command("usage")(usage.usage)
app.add_typer(owners.app, name="owners")
app.command("serve")(serve.serve)
app.command("preflight")(selftest.preflight)
app.command("selftest")(selftest.selftest)


def main() -> None:
    # SIGTERM stops a command as Ctrl-C does, so its clean-up runs: `selftest` stops the server
    # and load processes it started. (`serve`'s supervisor installs handlers of its own.)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with clean_errors():
        # Not standalone: click would print a usage error as a boxed block; here it is one line.
        try:
            exit_code = app(standalone_mode=False)
        except NoArgsIsHelpError as exc:
            exc.show()
            raise SystemExit(EXIT_USAGE) from None
        except UsageError as exc:
            hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
            fail(f"{exc.format_message()}{hint}", EXIT_USAGE)
        except ClickException as exc:
            fail(exc.format_message(), exc.exit_code)
        except typer.Abort:
            fail("aborted")
        # Non-standalone click returns the code of an explicit exit (`typer.Exit`) or `--help`.
        raise SystemExit(exit_code if isinstance(exit_code, int) else 0)
