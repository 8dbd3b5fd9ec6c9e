"""Writes docs/cli.md from the `gatekey` command tree itself, so the reference cannot drift:
`python scripts/cli_reference.py` rewrites it, `tests/unit/test_docs.py` checks it is current."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from cli.main import app

# What typer asks for to describe a parameter's type; no command runs in it.
_CONTEXT = typer.Context(typer.main.get_command(app))

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"

INTRO = """\
# CLI reference

`gatekey` reads the same settings as the service ([configuration](configuration.md)) from the
environment and `.env`. Errors are one line on stderr with a non-zero exit code: 1 for a refused
operation (unknown key, schema not at head), 2 for bad input or a setting that does not parse.
Every command and option below is generated from the CLI itself by `scripts/cli_reference.py`
(`tests/unit/test_docs.py` fails when this page is out of date); `gatekey COMMAND --help` prints
the same.
"""


def _default(param: Any) -> str:
    default = param.default
    if param.required or default is None or getattr(param, "is_flag", False) or default == "":
        return ""
    return f" [default: {default}]"


def _param_line(param: Any) -> str:
    if param.param_type_name == "argument":
        name = str(param.name).upper()
        return f"| `{name}` | argument{' (required)' if param.required else ''}{_default(param)} |"
    names = ", ".join(f"`{opt}`" for opt in [*param.opts, *param.secondary_opts])
    kind = param.display_type(_CONTEXT).strip("<>").split()[0]
    # A choice is shown as its values (`active|revoked`), escaped for the table; a type, upper.
    kind = kind.replace("|", "\\|") if "|" in kind else kind.upper()
    metavar = "" if param.is_flag else f" {kind}"
    help_text = (param.help or "").replace("|", "\\|")
    required = " (required)" if param.required else ""
    return f"| {names}{metavar} | {help_text}{_default(param)}{required} |"


def _command(path: str, command: Any) -> list[str]:
    lines = [
        f"### `{path}`",
        "",
        (command.help or "").strip().split("\n\n")[0].replace("\n", " "),
        "",
    ]
    params = [p for p in command.params if p.name != "help"]
    if params:
        lines += ["| argument / option | meaning |", "|---|---|", *map(_param_line, params), ""]
    return lines


def _walk(path: str, command: Any) -> list[str]:
    subcommands = getattr(command, "commands", None)
    if subcommands is None:
        return _command(path, command)
    lines: list[str] = []
    if path != "gatekey":
        lines += [f"## `{path}`", "", (command.help or "").strip(), ""]
    for name in sorted(subcommands):
        child = subcommands[name]
        if getattr(child, "commands", None) is None and path == "gatekey":
            lines += [f"## `{path} {name}`", "", *_command(f"{path} {name}", child)[2:]]
        else:
            lines += _walk(f"{path} {name}", child)
    return lines


def render() -> str:
    root = typer.main.get_command(app)
    lines = [INTRO, *_command("gatekey", root)[2:]]
    lines += _walk("gatekey", root)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    DOC.write_text(render())
    sys.stdout.write(f"wrote {DOC}\n")
