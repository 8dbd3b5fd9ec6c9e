"""`gatekey owners ...`: the limits all of an owner's keys share."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from cli.common import console, print_json, run_in_session
from cli.keys import ClearOpt, JsonOpt, LimitsArg, limits_or_clear
from service.audit.service import cli_actor
from service.owners import service
from service.owners.service import OwnerLimitsRecord

app = typer.Typer(help="Limits shared by all of an owner's keys.", no_args_is_help=True)


def _as_dict(record: OwnerLimitsRecord) -> dict[str, object]:
    return {"owner": record.owner, "rate_limits": list(record.rate_limits)}


def _show(records: list[OwnerLimitsRecord], as_json: bool) -> None:
    if as_json:
        print_json([_as_dict(r) for r in records])
        return
    table = Table("owner", "limits")
    for r in records:
        table.add_row(Text(r.owner), Text(", ".join(r.rate_limits) or "none"))
    console.print(table)


@app.command("set-limit")
def set_limit(
    ctx: typer.Context,
    owner: str,
    rate_limits: LimitsArg = None,
    clear: ClearOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Replace the limits all of OWNER's keys share, e.g. 1000/minute (`--clear`: none)."""
    limits = limits_or_clear(rate_limits, clear)
    record = run_in_session(
        ctx,
        lambda admin, session: service.set_owner_limits(
            session=session,
            owner=owner,
            rate_limits=limits,
            listener=admin.key_events,
            actor=cli_actor(),
        ),
    )
    if as_json:
        print_json(_as_dict(record))
    else:
        shown = ", ".join(record.rate_limits) or "none"
        console.print(f"{escape(record.owner)} limits are now {escape(shown)}")


@app.command()
def show(ctx: typer.Context, owner: str, as_json: JsonOpt = False) -> None:
    """Show OWNER's limits."""
    record = run_in_session(
        ctx, lambda admin, session: service.get_owner_limits(session=session, owner=owner)
    )
    if as_json:
        print_json(_as_dict(record))
    else:
        _show([record], as_json=False)


@app.command("list")
def list_(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List every owner with limits."""
    records = run_in_session(ctx, lambda admin, session: service.list_owner_limits(session=session))
    _show(records, as_json)
