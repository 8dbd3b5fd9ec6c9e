"""`gatekey usage`: a key's or an owner's admitted requests per minute, hour or day."""

from __future__ import annotations

import uuid
from typing import Annotated

import typer
from rich.table import Column, Table
from rich.text import Text

from cli.common import EXIT_USAGE, console, fail, print_json, run_in_session, settings_of
from service.durations import parse_duration
from service.errors import InvalidInput
from service.usage.rollups import Granularity, UsageSeries, key_usage, owner_usage, usage_window

BAR_WIDTH = 40
_START_FORMAT = {
    Granularity.MINUTE: "%Y-%m-%d %H:%M",
    Granularity.HOUR: "%Y-%m-%d %H:00",
    Granularity.DAY: "%Y-%m-%d",
}


def usage(
    ctx: typer.Context,
    key_id: Annotated[
        str | None, typer.Argument(metavar="KEY_ID", help="The key's id.", show_default=False)
    ] = None,
    owner: Annotated[
        str | None, typer.Option("--owner", help="Every key of this owner, summed.")
    ] = None,
    since: Annotated[
        str, typer.Option(help="How far back: 90m, 24h, 7d (at most USAGE_RETENTION).")
    ] = "24h",
    by: Annotated[Granularity, typer.Option(help="Bucket width, cut in UTC.")] = Granularity.HOUR,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Admitted requests of a key (KEY_ID) or of an owner's keys (--owner) per bucket."""
    if (key_id is None) == (owner is None):
        fail("give a KEY_ID or --owner OWNER, not both and not neither", EXIT_USAGE)
    key = _key_id(key_id) if key_id is not None else None
    retention = parse_duration(settings_of(ctx).usage_retention)
    try:
        window = usage_window(since, by, retention=retention)
    except InvalidInput as exc:
        fail(f"--{exc.message}", EXIT_USAGE)  # the message starts with the field, `since: `
    series = run_in_session(
        ctx,
        lambda _, session: (
            key_usage(session=session, key_id=key, window=window, by=by)
            if key is not None
            else owner_usage(session=session, owner=str(owner), window=window, by=by)
        ),
    )
    subject: dict[str, object] = {"key_id": str(key)} if key else {"owner": owner}
    if as_json:
        print_json({**subject, **_as_dict(series)})
        return
    _show(series, f"key {key}" if key else f"owner {owner}")


def _key_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        fail(f"invalid KEY_ID {text!r}: expected a UUID such as 0b7c5e2a-...", EXIT_USAGE)


def _as_dict(series: UsageSeries) -> dict[str, object]:
    return {
        "since": series.since.isoformat(),
        "by": series.by.value,
        "total": series.total,
        "buckets": [{"start": b.start.isoformat(), "count": b.count} for b in series.buckets],
    }


def _show(series: UsageSeries, subject: str) -> None:
    """A table, one row per bucket with requests, and a bar scaled to the busiest bucket."""
    since = series.since.strftime("%Y-%m-%d %H:%M UTC")
    table = Table(
        f"{series.by} (UTC)",
        Column("requests", justify="right"),
        "",
        title=Text(f"usage of {subject} since {since}"),
        caption=f"total {series.total:,} in {len(series.buckets)} {series.by}s with requests",
    )
    peak = max((b.count for b in series.buckets), default=0)
    for bucket in series.buckets:
        cells = round(BAR_WIDTH * bucket.count / peak) if peak else 0
        table.add_row(
            bucket.start.strftime(_START_FORMAT[series.by]),
            f"{bucket.count:,}",
            Text("█" * max(cells, 1), style="cyan"),
        )
    console.print(table)
