"""Integration fixtures: a fresh database migrated through alembic, real Redis, real processes.

The development database is never touched: each run creates `gatekey_test_<random>` next to it
and drops it at the end. PostgreSQL or Redis not answering stops the run with a clear message.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from service.config import DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL, Settings
from service.db import Database, migrations
from service.redis.keyspace import RedisKeyspace
from tests.factories import running_app
from tests.integration.postgres import pgbouncer, with_host
from tests.integration.servers import ServeProcess, forget_namespace, serve_settings, serving


def _base_urls() -> tuple[str, str]:
    return (
        os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL),
        os.environ.get("REDIS_URL", DEFAULT_REDIS_URL),
    )


async def _admin_execute(database_url: str, *statements: str) -> None:
    engine = create_async_engine(
        make_url(database_url).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )
    try:
        async with engine.connect() as connection:
            for statement in statements:
                await connection.execute(text(statement))
    finally:
        await engine.dispose()


async def _require_services(database_url: str, redis_url: str) -> None:
    try:
        await _admin_execute(database_url, "SELECT 1")
    except Exception as exc:
        pytest.exit(f"PostgreSQL does not answer at {database_url}: {exc}", returncode=3)
    client = aioredis.Redis.from_url(redis_url, socket_timeout=2)
    try:
        await client.ping()
    except Exception as exc:
        pytest.exit(f"Redis does not answer at {redis_url}: {exc}", returncode=3)
    finally:
        await client.aclose()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--pgbouncer",
        action="store_true",
        help="reach PostgreSQL through a PgBouncer of the run's own, in transaction pooling mode",
    )


@pytest.fixture(scope="session")
def settings(request: pytest.FixtureRequest) -> Iterator[Settings]:
    """Settings on a new database migrated to head through alembic; dropped after the run.
    With `--pgbouncer`, everything (migrations included) goes through a PgBouncer."""
    base_url, redis_url = _base_urls()
    asyncio.run(_require_services(base_url, redis_url))
    run_id = uuid.uuid4().hex[:8]
    name = f"gatekey_test_{run_id}"
    database_url = make_url(base_url).set(database=name).render_as_string(hide_password=False)
    through_pgbouncer = bool(request.config.getoption("--pgbouncer"))
    with contextlib.ExitStack() as stack:
        if through_pgbouncer:
            database_url = with_host(database_url, stack.enter_context(pgbouncer(base_url)))
        test_settings = Settings(
            database_url=database_url,
            database_pgbouncer=through_pgbouncer,
            redis_url=redis_url,
            # A namespace of the run's own: runs sharing a Redis (CI beside a developer) never
            # see each other's dirty usage, flush markers or directory entries.
            redis_namespace=f"gktest-{run_id}",
            # Every test client is 127.0.0.1: the per-address budget of failed verifications is
            # tested where it is the subject (test_hostile_inputs.py), never spent elsewhere.
            failed_verification_limit="1000000/minute",
            database_pool_size=10,
            database_pool_max_overflow=5,
        )
        migrations.upgrade(test_settings)
        yield test_settings
        forget_namespace(redis_url, test_settings.redis_namespace)
    asyncio.run(_admin_execute(base_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def stack_settings(settings: Settings) -> Settings:
    """For the servers the self-test's tests start: small pools (PostgreSQL's 100 connections
    are shared) and a Redis timeout that a busy two-core machine does not trip, so a healthy
    stack stays exact."""
    return settings.model_copy(
        update={"database_pool_size": 5, "database_pool_max_overflow": 5, "redis_timeout": 0.5}
    )


@pytest.fixture(scope="session")
async def database(settings: Settings) -> AsyncIterator[Database]:
    db = Database(settings, application_name="gatekey-tests")
    yield db
    await db.dispose()


@pytest.fixture
async def session(database: Database) -> AsyncIterator[AsyncSession]:
    """A session inside a transaction that is rolled back after the test, commits included."""
    async with database.engine.connect() as connection:
        transaction = await connection.begin()
        test_session = AsyncSession(
            bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        try:
            yield test_session
        finally:
            await test_session.close()
            await transaction.rollback()


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(settings.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def keyspace(redis: aioredis.Redis) -> AsyncIterator[RedisKeyspace]:
    """A Redis namespace of this test's own; every key under it is deleted afterwards."""
    space = RedisKeyspace(f"gktest-{uuid.uuid4().hex[:12]}")
    yield space
    keys = [key async for key in redis.scan_iter(f"{space.namespace}:*", count=1000)]
    if keys:
        await redis.delete(*keys)


@pytest.fixture(scope="module")
async def api(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app in-process (lifespan run) and a client of it, shared by the tests of one module;
    the Redis state it left is removed afterwards."""
    async with running_app(settings) as app_and_client:
        yield app_and_client
    forget_namespace(settings.redis_url, settings.redis_namespace)


@pytest.fixture(scope="module")
def serve_overrides() -> dict[str, object]:
    """Settings the module's `server` runs with on top of `serve_settings`: none, unless a module
    overrides this fixture."""
    return {}


@pytest.fixture(scope="module")
def server(
    settings: Settings, serve_overrides: dict[str, object], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeProcess]:
    """`gatekey serve --workers 2`, shared by the tests of one module."""
    workdir = tmp_path_factory.mktemp("serve")
    with serving(serve_settings(settings, **serve_overrides), workdir, workers=2) as running:
        yield running
