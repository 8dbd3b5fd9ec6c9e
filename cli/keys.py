"""`gatekey keys ...`: create, list, show, update, disable, enable, revoke, rotate and re-limit
keys."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from sqlalchemy.ext.asyncio import AsyncSession

from cli.common import EXIT_USAGE, console, fail, print_json, run_in_session
from service.audit.service import AuditAction, cli_actor
from service.durations import parse_duration
from service.errors import InvalidInput
from service.keys import service
from service.keys.events import RedisKeyChangePublisher
from service.keys.format import KeyFormat
from service.keys.listing import DEFAULT_PAGE, MAX_PAGE, KeyCursor, KeyState, listing_state
from service.keys.record import KeyRecord
from service.keys.schemas import key_json
from service.keys.service import MAX_BULK_KEYS, IssuedKey, KeyPage

app = typer.Typer(
    help="Create, list, show, update, disable, enable, revoke, rotate and re-limit API keys.",
    no_args_is_help=True,
)
T = TypeVar("T")

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _json_object(text: str) -> dict[str, Any]:
    """`--metadata`: a JSON object, else one usage line naming the option (exit code 2)."""
    try:
        value = json.loads(text)
    except ValueError as error:
        raise typer.BadParameter(f"not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise typer.BadParameter('expected a JSON object such as \'{"plan": "pro"}\'')
    return value


def _aware_datetime(text: str) -> datetime:
    """`--expires-at`: an ISO 8601 time naming its zone (a bare one could be any host's)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an ISO 8601 time") from None
    if value.utcoffset() is None:
        raise typer.BadParameter(f"{text!r} names no time zone: add Z or +HH:MM")
    return value


MetadataOpt = Annotated[
    dict[str, Any] | None,
    typer.Option(
        parser=_json_object,
        metavar="JSON",
        help='A JSON object (at most 4096 bytes) returned on every check, e.g. \'{"plan":"pro"}\'.',
    ),
]
CountOpt = Annotated[
    int | None,
    typer.Option(
        min=1,
        max=MAX_BULK_KEYS,
        help="Create N keys with these settings in one transaction (imports, load tests). "
        'Needs --json: prints one JSON object per line, {"id": ..., "key": ...}.',
    ),
]


CreditsOpt = Annotated[
    int | None,
    typer.Option(help="Units the key's requests spend (their cost); at 0, USAGE_EXCEEDED."),
]
RefillOpt = Annotated[
    str | None,
    typer.Option(help="N/second|minute|hour|day: credits set back to N at each period boundary."),
]


@dataclass(frozen=True, slots=True)
class KeyTools:
    """What a key use case needs: a session, the key format, and the change announcer."""

    session: AsyncSession
    key_format: KeyFormat
    listener: RedisKeyChangePublisher


def _run(ctx: typer.Context, use: Callable[[KeyTools], Awaitable[T]]) -> T:
    return run_in_session(
        ctx, lambda admin, session: use(KeyTools(session, admin.key_format, admin.key_events))
    )


def _key_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        fail(f"invalid key id {text!r}: expected a UUID such as 0b7c5e2a-...", EXIT_USAGE)


def _as_dict(record: KeyRecord) -> dict[str, object]:
    return key_json(record)


def _show_records(records: list[KeyRecord]) -> None:
    table = Table(
        "id",
        "prefix",
        "name",
        "owner",
        "scopes",
        "limits",
        "credits",
        "expires",
        "revoked",
        "enabled",
    )
    for r in records:
        cells = (
            str(r.id),
            r.display_prefix,
            r.name,
            r.owner or "",
            ",".join(r.scopes),
            ", ".join(r.rate_limits) or "default",
            "" if r.credits_remaining is None else f"{r.credits_remaining:,}",
            str(r.expires_at or ""),
            str(r.revoked_at or ""),
            "yes" if r.enabled else "no",
        )
        # Text, not str: a cell is printed as it is, never read as rich markup (a key named
        # `[/bold]` would otherwise stop the listing with a markup error).
        table.add_row(*(Text(cell) for cell in cells))
    console.print(table)


def _show_record(record: KeyRecord, as_json: bool) -> None:
    if as_json:
        print_json(_as_dict(record))
    else:
        _show_records([record])


def _show_issued(issued: IssuedKey, as_json: bool) -> None:
    if as_json:
        print_json({**_as_dict(issued.record), "key": issued.plaintext})
        return
    _show_records([issued.record])
    console.print(f"key: [bold]{issued.plaintext}[/bold]  (shown once; store it now)")


def _print_minted(minted: list[IssuedKey]) -> None:
    """JSON Lines: a consumer streams 100,000 keys without parsing one huge array."""
    typer.echo("\n".join(json.dumps({"id": str(m.record.id), "key": m.plaintext}) for m in minted))


@app.command()
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="What the key is for.")],
    owner: Annotated[str | None, typer.Option(help="Who the key belongs to.")] = None,
    scopes: Annotated[str, typer.Option(help="Comma-separated scopes, e.g. admin,read.")] = "",
    rate_limit: Annotated[
        list[str] | None,
        typer.Option(
            help="N/second|minute|hour|day, optionally followed by ' shadow'; repeat for "
            "several limits (at most 8)."
        ),
    ] = None,
    expires_in: Annotated[str | None, typer.Option(help="e.g. 30d, 12h.")] = None,
    metadata: MetadataOpt = None,
    credits: CreditsOpt = None,
    refill: RefillOpt = None,
    as_json: JsonOpt = False,
    count: CountOpt = None,
) -> None:
    """Create a key and print it once (`--count N --json`: N keys, one JSON line each)."""
    expires = parse_duration(expires_in) if expires_in else None
    scope_list = [s.strip() for s in scopes.split(",") if s.strip()]
    if count is not None and not as_json:
        fail("--count prints the keys as JSON lines: add --json", EXIT_USAGE)
    issued = _run(
        ctx,
        lambda tools: service.create_keys(
            session=tools.session,
            key_format=tools.key_format,
            count=1 if count is None else count,
            name=name,
            owner=owner,
            scopes=scope_list,
            rate_limits=rate_limit or [],
            expires_in=expires,
            metadata=metadata,
            credits=credits,
            refill=refill,
            listener=tools.listener,
            actor=cli_actor(),
        ),
    )
    if count is None:
        _show_issued(issued[0], as_json)
    else:
        _print_minted(issued)


def _cursor(text: str | None) -> KeyCursor | None:
    """`--cursor` read at parse time: a garbled one is a usage error (one line, exit 2)."""
    if text is None:
        return None
    try:
        return KeyCursor.decode(text)
    except InvalidInput as exc:
        raise typer.BadParameter(exc.message, param_hint="'--cursor'") from None


def _show_page(page: KeyPage, as_json: bool) -> None:
    if as_json:
        print_json({"keys": [_as_dict(r) for r in page.keys], "next_cursor": page.next_cursor})
        return
    _show_records(page.keys)
    if page.next_cursor is not None:
        # One line however narrow the terminal: the cursor is copied whole.
        console.print(Text(f"more: --cursor {page.next_cursor}"), soft_wrap=True)


def _stream_page(page: KeyPage, as_json: bool) -> None:
    """`--all-pages`: JSON Lines (a consumer reads a million keys without one huge array), or a
    table a page."""
    if as_json:
        typer.echo("\n".join(json.dumps(_as_dict(r)) for r in page.keys))
    elif page.keys:
        _show_records(page.keys)


@app.command("list")
def list_(
    ctx: typer.Context,
    owner: Annotated[str | None, typer.Option(help="Only this owner's keys.")] = None,
    name_prefix: Annotated[
        str | None, typer.Option(help="Only names starting with this (as typed; no wildcards).")
    ] = None,
    state: Annotated[
        KeyState | None,
        typer.Option(help="Only keys in this state [default: active]."),
    ] = None,
    include_inactive: Annotated[bool, typer.Option("--all", help="Same as --state all.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=MAX_PAGE, help="Keys per page.")] = DEFAULT_PAGE,
    cursor: Annotated[
        str | None, typer.Option(help="Resume after the page that printed this `more:` cursor.")
    ] = None,
    all_pages: Annotated[
        bool, typer.Option("--all-pages", help="Every page, streamed (--json: one key a line).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """List keys in creation order, a page at a time (active ones unless --state says so)."""
    after = _cursor(cursor)
    try:
        wanted = listing_state(state, include_inactive=include_inactive)
    except InvalidInput as exc:
        raise typer.BadParameter(exc.message, param_hint="'--all'") from None

    async def pages(tools: KeyTools) -> None:
        position = after
        while True:
            page = await service.list_keys(
                session=tools.session,
                owner=owner,
                name_prefix=name_prefix,
                state=wanted,
                after=position,
                limit=limit,
            )
            # Each page reads in its own transaction: no snapshot is held while pages print.
            await tools.session.rollback()
            if not all_pages:
                _show_page(page, as_json)
                return
            _stream_page(page, as_json)
            if page.next_cursor is None:
                return
            position = KeyCursor.decode(page.next_cursor)

    _run(ctx, pages)


@app.command()
def show(ctx: typer.Context, key_id: str, as_json: JsonOpt = False) -> None:
    """Show one key."""
    kid = _key_id(key_id)
    record = _run(ctx, lambda tools: service.get_key(session=tools.session, key_id=kid))
    _show_record(record, as_json)


@app.command()
def revoke(ctx: typer.Context, key_id: str, as_json: JsonOpt = False) -> None:
    """Revoke a key at once."""
    kid = _key_id(key_id)
    record = _run(
        ctx,
        lambda tools: service.revoke_key(
            session=tools.session, key_id=kid, listener=tools.listener, actor=cli_actor()
        ),
    )
    if as_json:
        print_json(_as_dict(record))
    else:
        console.print(f"revoked {record.id} ({escape(record.display_prefix)})")


@app.command()
def rotate(
    ctx: typer.Context,
    key_id: str,
    grace: Annotated[
        str, typer.Option(help="How long the old key keeps working, e.g. 24h.")
    ] = "0s",
    as_json: JsonOpt = False,
) -> None:
    """Issue a successor key; the old one works until the grace period ends."""
    kid = _key_id(key_id)
    grace_period = parse_duration(grace)
    issued = _run(
        ctx,
        lambda tools: service.rotate_key(
            session=tools.session,
            key_format=tools.key_format,
            key_id=kid,
            grace=grace_period,
            listener=tools.listener,
            actor=cli_actor(),
        ),
    )
    _show_issued(issued, as_json)


LimitsArg = Annotated[
    list[str] | None,
    typer.Argument(help="Limits such as 10/second 10000/day '1000/day shadow' (at most 8)."),
]
ClearOpt = Annotated[bool, typer.Option("--clear", help="Remove every limit.")]


def limits_or_clear(rate_limits: list[str] | None, clear: bool) -> list[str]:
    """The limits a set-limit command was given: some, or none with `--clear`, never both
    (an empty command line does not remove limits by accident)."""
    if bool(rate_limits) == clear:
        fail("give the limits, or --clear to remove them", EXIT_USAGE)
    return rate_limits or []


@app.command("set-limit")
def set_limit(
    ctx: typer.Context,
    key_id: str,
    rate_limits: LimitsArg = None,
    clear: ClearOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Replace a key's rate limits, e.g. 10/second 10000/day (`--clear`: the default policy)."""
    limits = limits_or_clear(rate_limits, clear)
    record = _update(ctx, key_id, AuditAction.SET_LIMIT, rate_limits=limits)
    shown = ", ".join(record.rate_limits) or "the default policy"
    _report(record, as_json, f"{record.id} limits are now {shown}")


def _update(
    ctx: typer.Context, key_id: str, action: AuditAction = AuditAction.UPDATE, **changes: Any
) -> KeyRecord:
    """`update_key` from the CLI: `changes` (its keyword arguments) audited as `action`, then
    announced to every worker."""
    kid = _key_id(key_id)
    return _run(
        ctx,
        lambda tools: service.update_key(
            session=tools.session,
            key_id=kid,
            listener=tools.listener,
            actor=cli_actor(),
            action=action,
            **changes,
        ),
    )


def _report(record: KeyRecord, as_json: bool, line: str) -> None:
    """The changed key as JSON, or one line saying what changed (user values never markup)."""
    if as_json:
        print_json(_as_dict(record))
    else:
        console.print(Text(line))


def _expiry(
    expires_in: str | None, expires_at: datetime | None, no_expiry: bool
) -> datetime | service.Keep | None:
    """At most one of the three expiry options, as `update_key` takes it."""
    if (expires_in is not None) + (expires_at is not None) + no_expiry > 1:
        fail("give at most one of --expires-in, --expires-at and --no-expiry", EXIT_USAGE)
    if expires_in is not None:
        return datetime.now(UTC) + parse_duration(expires_in)
    if no_expiry:
        return None
    return service.KEEP if expires_at is None else expires_at


@app.command()
def update(
    ctx: typer.Context,
    key_id: str,
    name: Annotated[str | None, typer.Option(help="What the key is for.")] = None,
    owner: Annotated[str | None, typer.Option(help="Who the key belongs to; '' for none.")] = None,
    scopes: Annotated[
        str | None, typer.Option(help="Comma-separated scopes, replacing all; '' for none.")
    ] = None,
    metadata: MetadataOpt = None,
    expires_in: Annotated[str | None, typer.Option(help="Expire this long from now.")] = None,
    expires_at: Annotated[
        datetime | None,
        typer.Option(
            parser=_aware_datetime,
            metavar="ISO8601",
            help="Expire at this time, with its zone, e.g. 2030-01-01T00:00:00Z.",
        ),
    ] = None,
    no_expiry: Annotated[bool, typer.Option("--no-expiry", help="Never expire.")] = False,
    enabled: Annotated[
        bool | None, typer.Option("--enabled/--disabled", help="Admit or refuse the key.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Change the given fields of a key; the others stay as they are."""
    expiry = _expiry(expires_in, expires_at, no_expiry)
    scope_list = None if scopes is None else [s.strip() for s in scopes.split(",") if s.strip()]
    record = _update(
        ctx,
        key_id,
        name=name,
        owner=owner,
        scopes=scope_list,
        metadata=metadata,
        enabled=enabled,
        expires_at=expiry,
    )
    _show_record(record, as_json)


def _set_enabled(ctx: typer.Context, key_id: str, enabled: bool, as_json: bool) -> None:
    record = _update(ctx, key_id, enabled=enabled)
    state = "enabled" if record.enabled else "disabled"
    _report(record, as_json, f"{state} {record.id} ({record.display_prefix})")


@app.command()
def disable(ctx: typer.Context, key_id: str, as_json: JsonOpt = False) -> None:
    """Refuse a key (DISABLED) until it is enabled again; unlike revoke, reversible."""
    _set_enabled(ctx, key_id, False, as_json)


@app.command()
def enable(ctx: typer.Context, key_id: str, as_json: JsonOpt = False) -> None:
    """Admit a disabled key again."""
    _set_enabled(ctx, key_id, True, as_json)


@app.command("set-credits")
def set_credits(
    ctx: typer.Context,
    key_id: str,
    credits: Annotated[int, typer.Argument(help="The count starts again at this.")],
    refill: RefillOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Give a key CREDITS units (and a refill), replacing what it had left."""
    record = _update(ctx, key_id, AuditAction.SET_CREDITS, credits=credits, refill=refill)
    every = f", refilled to {record.refill}" if record.refill else ""
    _report(record, as_json, f"{record.id} has {record.credits_remaining} credits{every}")
