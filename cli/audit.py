"""`gatekey audit list`: the audit log of admin actions on keys, oldest first."""

from __future__ import annotations

import json
import uuid
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from cli.common import console, fail, print_json, run_in_session
from service.audit.service import MAX_PAGE, AuditRecord, list_entries

app = typer.Typer(help="Read the audit log of admin actions on keys.", no_args_is_help=True)


def _key_filter(text: str | None) -> uuid.UUID | None:
    if text is None:
        return None
    try:
        return uuid.UUID(text)
    except ValueError:
        fail(f"invalid key id {text!r}: expected a UUID such as 0b7c5e2a-...")


def _as_dict(record: AuditRecord) -> dict[str, object]:
    return {
        "id": record.id,
        "at": record.at.isoformat(),
        "action": record.action,
        "key_id": str(record.key_id),
        "actor": record.actor,
        "changes": record.changes,
    }


@app.command("list")
def list_(
    ctx: typer.Context,
    key: Annotated[str | None, typer.Option("--key", help="Only this key's entries.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_PAGE, help="At most N entries.")] = 100,
    after: Annotated[
        int | None, typer.Option(min=0, help="Entries after this id (the last one shown).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Who did what to which key, oldest first (`--after ID` pages on)."""
    key_id = _key_filter(key)
    records = run_in_session(
        ctx,
        lambda _, session: list_entries(
            session=session, key_id=key_id, after_id=after, limit=limit
        ),
    )
    if as_json:
        print_json([_as_dict(record) for record in records])
        return
    table = Table("id", "at", "action", "key", "actor", "changes")
    for r in records:
        # Text, not markup: stored values (names, owners) are shown as they are.
        cells = (str(r.id), r.at.isoformat(), r.action, str(r.key_id), r.actor)
        table.add_row(*(Text(cell) for cell in cells), Text(json.dumps(r.changes)))
    console.print(table)
