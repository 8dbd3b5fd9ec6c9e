"""The app's session pool: no leak under concurrency and cancellation; 503 when exhausted."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import QueuePool, make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.config import Settings
from service.db import Database
from service.workers.sizing import read_connection_budget
from tests.factories import (
    assert_problem,
    create_key,
    key_header,
    running_app,
    state_of,
    unique_owner,
    unknown_key,
)
from tests.integration.servers import forget_namespace

CONCURRENT = 200
ADMIN_CALLS = 20  # every 10th request; the others present unknown keys, each a cache miss
# Requests 1, 5, 9, ... are abandoned by their client after 2 to 194 ms: 200 requests take
# about 0.5 s in-process, so the cancellations land before, during and after database work.
CANCEL_EVERY = 4
POOL_TIMEOUTS = "gatekey_db_pool_timeouts_total"
# A checkout that waited for the held connection would wait until the test gave it back: never.
# One that gives up after DATABASE_POOL_TIMEOUT (0.2 s) ends far below this on any host.
HANG_S = 10.0


@pytest.fixture(scope="module", autouse=True)
async def _clean_redis(settings: Settings) -> AsyncIterator[None]:
    yield
    forget_namespace(settings.redis_url, settings.redis_namespace)


async def _abandoned_after(
    delay_s: float, request: Coroutine[Any, Any, httpx.Response]
) -> httpx.Response | None:
    """The client gives up after `delay_s`. An anyio cancel scope, like the ones servers and
    middleware use, cancels every await inside it until the request has unwound, so it also hits
    the clean-up code (unlike a single `Task.cancel()`)."""
    with anyio.move_on_after(delay_s):
        return await request
    return None


def _checked_out(engine: AsyncEngine) -> int:
    pool = engine.pool
    assert isinstance(pool, QueuePool), type(pool)  # the app's pool is a queue pool
    return pool.checkedout()


async def _settled(engine: AsyncEngine, database: Database, database_name: str) -> tuple[int, int]:
    """Checked-out connections of the app's pool and `idle in transaction` backends of the test
    database, once both reach zero or after 10 s (cancelled requests close in the background)."""
    deadline = time.monotonic() + 10.0
    while True:
        checked_out = _checked_out(engine)
        async with database.engine.connect() as connection:
            idle_in_transaction = await connection.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = :name AND state = 'idle in transaction'"
                ),
                {"name": database_name},
            )
        if (checked_out, idle_in_transaction) == (0, 0) or time.monotonic() > deadline:
            return checked_out, idle_in_transaction
        await asyncio.sleep(0.05)


async def test_no_connection_leaks_under_concurrency_and_cancellation(
    settings: Settings, database: Database
) -> None:
    owner = unique_owner("pool")
    admin = await create_key(database, settings, owner=owner, scopes=["admin"])
    # A generous pool timeout: on a busy host some waits pass 2 s, and a 503 is not what this
    # test is about (the exhaustion test below is).
    patient = settings.model_copy(
        update={
            "database_pool_size": 10,
            "database_pool_max_overflow": 5,
            "database_pool_timeout": 30,
        }
    )
    async with running_app(patient) as (app, client):
        engine = state_of(app).database.engine

        async def request(index: int) -> httpx.Response:
            if index % (CONCURRENT // ADMIN_CALLS) == 0:
                return await client.get(
                    "/v1/admin/keys",
                    params={"owner": owner},
                    headers=key_header(admin.plaintext),
                )
            return await client.get("/v1/whoami", headers=key_header(unknown_key(settings)))

        async def call(index: int) -> httpx.Response | None:
            if index % CANCEL_EVERY == 1:
                return await _abandoned_after(0.002 * (index % 100), request(index))
            return await request(index)

        outcomes = await asyncio.gather(*(call(i) for i in range(CONCURRENT)))

        responses = [o for o in outcomes if o is not None]
        abandoned = CONCURRENT - len(responses)
        assert 0 < abandoned <= CONCURRENT // CANCEL_EVERY
        statuses = Counter(
            (r.status_code, r.json()["code"] if r.status_code != 200 else "OK") for r in responses
        )
        assert statuses == Counter(
            {(200, "OK"): ADMIN_CALLS, (401, "NOT_FOUND"): len(responses) - ADMIN_CALLS}
        )
        admin_listing = next(r for r in responses if r.status_code == 200)
        assert [k["id"] for k in admin_listing.json()["keys"]] == [str(admin.record.id)]

        database_name = make_url(settings.database_url).database
        assert database_name is not None
        assert await _settled(engine, database, database_name) == (0, 0)


async def test_exhausted_pool_answers_503_quickly(settings: Settings, database: Database) -> None:
    tight = settings.model_copy(
        update={
            "database_pool_size": 1,
            "database_pool_max_overflow": 0,
            "database_pool_timeout": 0.2,
        }
    )
    async with running_app(tight) as (app, client):
        app_database = state_of(app).database
        async with app_database.get_session() as held:
            await held.execute(text("SELECT 1"))
            assert _checked_out(app_database.engine) == 1

            registry = state_of(app).metrics.scrape_registry
            timeouts_before = registry.get_sample_value(POOL_TIMEOUTS)
            started = time.monotonic()
            async with asyncio.timeout(HANG_S):
                response = await client.get("/v1/whoami", headers=key_header(unknown_key(tight)))
            elapsed = time.monotonic() - started
            body = assert_problem(response, 503, "DATABASE_UNAVAILABLE")
            assert response.headers["retry-after"] == "1"
            assert "Traceback" not in body["detail"]
            # It waited its pool timeout (not failing at once), then gave up: one pool timeout.
            assert elapsed >= tight.database_pool_timeout
            assert registry.get_sample_value(POOL_TIMEOUTS) == (timeouts_before or 0) + 1

            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["database"] == "unavailable"

        # The held connection is back: the same request now reaches the database.
        recovered = await client.get("/v1/whoami", headers=key_header(unknown_key(tight)))
        assert_problem(recovered, 401, "NOT_FOUND")
        # Settled, not read at one instant: the app's own background jobs (key-change feed,
        # usage flusher, pruner) borrow the pool's one connection for moments.
        database_name = make_url(tight.database_url).database
        assert database_name is not None
        assert await _settled(app_database.engine, database, database_name) == (0, 0)


async def test_connection_budget_is_read_from_postgresql(
    settings: Settings, database: Database
) -> None:
    """The budget matches what PostgreSQL reports, read without deprecation warnings."""
    async with database.engine.connect() as connection:
        max_connections = int(await connection.scalar(text("SHOW max_connections")) or 0)
        reserved = await connection.scalar(
            text(
                "SELECT coalesce(sum(setting::int), 0) FROM pg_settings WHERE name IN "
                "('superuser_reserved_connections', 'reserved_connections')"
            )
        )
    budget = await read_connection_budget(settings)
    if settings.database_pgbouncer:  # the run through PgBouncer: it budgets the server's slots
        assert budget is None
        return
    assert budget is not None
    assert (budget.max_connections, budget.reserved) == (max_connections, reserved)
    assert budget.available == max_connections - reserved
