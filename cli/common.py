"""What every command shares: the settings from the callback, and errors as one line + exit code."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession

from service.config import Settings, SettingsError, load_settings
from service.errors import DatabaseUnavailable, GatekeyError, InvalidInput
from service.logging import configure_logging
from service.resources import AdminResources, open_admin

console = Console()
error_console = Console(stderr=True)

T = TypeVar("T")

EXIT_ERROR = 1
EXIT_USAGE = 2


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    # The message may quote what the user typed: escaped, so it is never read as rich markup.
    error_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise SystemExit(code)


def loaded_settings(ctx: typer.Context) -> Settings:
    """Settings are loaded once per invocation, on first use, so `--help` never needs them;
    `SettingsError` names the variable that does not parse."""
    root = ctx.find_root()
    if root.obj is None:
        root.obj = load_settings()
        configure_logging(root.obj)
    settings: Settings = root.obj
    return settings


def settings_of(ctx: typer.Context) -> Settings:
    """The settings, or one line naming the bad variable and exit code 2."""
    try:
        return loaded_settings(ctx)
    except SettingsError as exc:
        fail(str(exc), EXIT_USAGE)


@contextmanager
def clean_errors() -> Iterator[None]:
    """Domain errors and unreachable services become one line on stderr, never a traceback: bad
    input exits 2 like a usage error, a refused operation 1."""
    try:
        yield
    except InvalidInput as exc:
        fail(f"{exc.message} ({exc.code})", EXIT_USAGE)
    except GatekeyError as exc:
        fail(f"{exc.message} ({exc.code})")
    except (OSError, sa_exc.DBAPIError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        fail(f"database unavailable: {reason} ({DatabaseUnavailable.code})")


def run_async(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(make())


def run_in_session(
    ctx: typer.Context, use: Callable[[AdminResources, AsyncSession], Awaitable[T]]
) -> T:
    """Run one use case in a session of a short-lived engine, then close everything."""
    settings = settings_of(ctx)

    async def main() -> T:
        async with open_admin(settings) as admin, admin.database.get_session() as session:
            return await use(admin, session)

    return run_async(main)


def print_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))
