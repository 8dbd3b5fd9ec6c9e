"""Small typed helpers for the tests: keys, an in-process app, CLI runs, SQL counting, problems."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import Text, cast, column, event, func, select, table, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.app import create_app
from service.config import Settings
from service.db import Database
from service.harness.gatekey import CliResult as CliResult  # the tests' CLI runs return it
from service.harness.gatekey import cli_env, run_cli_async
from service.keys import service
from service.keys.format import CHECKSUM_LENGTH, KeyFormat, checksum, generate_key
from service.keys.service import IssuedKey
from service.state import AppState

TESTS_DIR = Path(__file__).resolve().parent
PROBLEM_FIELDS = {"type", "title", "status", "detail", "code"}
# The audit actor of keys the tests mint and change directly through the use cases.
TEST_ACTOR = "cli:tests"


def unique_owner(label: str = "owner") -> str:
    """An owner no other test uses, so listings can be filtered to one test's keys."""
    return f"{label}-{uuid.uuid4().hex[:12]}"


@dataclass(slots=True)
class CallWindow:
    """The UTC wall-clock interval a call ran in; a time the call read from the clock lies in it."""

    started_at: datetime
    ended_at: datetime | None = None

    def assert_stamped(self, stamp: datetime | str | None, *, plus: timedelta) -> datetime:
        """`stamp` is the call's own clock reading plus `plus` (a lifetime, a grace, or zero),
        to within the call's duration: a stamp that ignored `plus` falls outside. Returns it."""
        assert self.ended_at is not None, "assert after the call's block has ended"
        assert stamp is not None, "no time was stamped"
        at = datetime.fromisoformat(stamp) if isinstance(stamp, str) else stamp
        earliest, latest = self.started_at + plus, self.ended_at + plus
        assert earliest <= at <= latest, f"stamped {at}, expected {earliest} .. {latest}"
        return at


@contextmanager
def call_window() -> Iterator[CallWindow]:
    """Take the time just before and just after the block (the call whose stamp is checked)."""
    window = CallWindow(datetime.now(UTC))
    yield window
    window.ended_at = datetime.now(UTC)


async def create_key(
    database: Database,
    settings: Settings,
    *,
    name: str = "test key",
    owner: str | None = None,
    scopes: list[str] | None = None,
    rate_limit: str | None = None,
    rate_limits: list[str] | None = None,
    expires_in: timedelta | None = None,
    credits: int | None = None,
    refill: str | None = None,
) -> IssuedKey:
    """A key committed to the test database through the same use case the CLI calls
    (`rate_limit`: one limit, the common case)."""
    async with database.get_session() as session:
        return await service.create_key(
            actor=TEST_ACTOR,
            session=session,
            key_format=KeyFormat.from_settings(settings),
            name=name,
            owner=owner,
            scopes=scopes,
            rate_limits=rate_limits or ([rate_limit] if rate_limit else []),
            expires_in=expires_in,
            credits=credits,
            refill=refill,
        )


async def revoke_key(database: Database, key_id: uuid.UUID) -> None:
    async with database.get_session() as session:
        await service.revoke_key(actor=TEST_ACTOR, session=session, key_id=key_id)


async def rotate_key(
    database: Database, settings: Settings, key_id: uuid.UUID, grace: timedelta
) -> IssuedKey:
    async with database.get_session() as session:
        return await service.rotate_key(
            actor=TEST_ACTOR,
            session=session,
            key_format=KeyFormat.from_settings(settings),
            key_id=key_id,
            grace=grace,
        )


def key_header(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def unknown_key(settings: Settings) -> str:
    """Well formed (it passes the checksum) but never stored."""
    return generate_key(settings.key_prefix)


def malformed_keys(settings: Settings) -> dict[str, str]:
    """One key per way of being malformed; each differs from a valid key in that way only."""
    prefix = settings.key_prefix
    valid = generate_key(prefix)
    bad_alphabet_body = valid[: -CHECKSUM_LENGTH - 1] + "-"
    last = valid[-1]
    return {
        "wrong prefix": generate_key("zz" if prefix != "zz" else "yy"),
        "too short": valid[:-1],
        "too long": valid + "a",
        "bad alphabet": bad_alphabet_body + checksum(bad_alphabet_body),
        "bad checksum": valid[:-1] + ("b" if last == "a" else "a"),
    }


async def flush_scripts_until(redis: Redis, stop: asyncio.Event, *, pause_s: float) -> int:
    """SCRIPT FLUSH, then `pause_s`, over and over until `stop` is set; how many flushes."""
    flushes = 0
    while not stop.is_set():
        await redis.script_flush()
        flushes += 1
        await asyncio.sleep(pause_s)
    return flushes


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """`create_app(settings)` with its lifespan running and an in-process client."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gatekey.test") as client:
            yield app, client


def state_of(app: FastAPI) -> AppState:
    state: AppState = app.state.gatekey
    return state


@contextmanager
def count_statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """Collect every SQL statement the engine sends while the block runs, but the background
    jobs' (the key-change feed polls twice a second, the usage pruner once a minute, whatever
    requests do)."""
    statements: list[str] = []

    def record(*args: Any) -> None:
        context = args[4]
        if "background_job" not in context.execution_options:
            statements.append(args[2])

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is RFC 9457 problem+json with the documented fields and the expected code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert set(body) >= PROBLEM_FIELDS
    assert body["status"] == status
    assert body["code"] == code
    assert isinstance(body["detail"], str)
    assert body["detail"]
    assert "Traceback" not in response.text
    return body


async def columns_containing(connection: AsyncConnection, needle: str) -> list[str]:
    """`schema.table.column` of every text-like column of every user table that holds `needle`."""
    columns = await connection.execute(
        text(
            "SELECT table_schema, table_name, column_name FROM information_schema.columns "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') "
            "AND data_type IN ('text', 'character varying', 'character', 'ARRAY', 'json', "
            "'jsonb', 'USER-DEFINED') ORDER BY 1, 2, 3"
        )
    )
    found = []
    for schema, table_name, column_name in columns:
        scanned = table(table_name, column(column_name), schema=schema)
        hits = await connection.scalar(
            select(func.count())
            .select_from(scanned)
            .where(func.strpos(cast(scanned.c[column_name], Text), needle) > 0)
        )
        if hits:
            found.append(f"{schema}.{table_name}.{column_name}")
    return found


async def run_cli(settings: Settings, *args: str, env: dict[str, str] | None = None) -> CliResult:
    """Run the installed `gatekey` with `settings` (bounded), from tests/ so that no `.env` of
    the repository's is read."""
    environment = cli_env(settings, COLUMNS="200", **(env or {}))
    return await run_cli_async(*args, env=environment, cwd=TESTS_DIR)
