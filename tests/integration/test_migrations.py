"""The migration chain through `gatekey db ...`: from nothing to head, down to base, up again."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import make_url, pool, text
from sqlalchemy.ext.asyncio import create_async_engine

from service.config import Settings
from service.db import migrations
from service.harness.processes import free_port
from tests.factories import CliResult, assert_problem, key_header, run_cli, running_app, unknown_key


@pytest.fixture
async def scratch(settings: Settings) -> AsyncIterator[Settings]:
    """Settings naming a database that does not exist yet; dropped at the end whatever happens."""
    name = f"gatekey_migrations_{uuid.uuid4().hex[:8]}"
    url = make_url(settings.database_url).set(database=name)
    yield Settings(
        database_url=url.render_as_string(hide_password=False), redis_url=settings.redis_url
    )
    admin = create_async_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


async def _tables(settings: Settings) -> set[str]:
    engine = create_async_engine(settings.database_url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            )
            return {row[0] for row in rows}
    finally:
        await engine.dispose()


async def _columns(settings: Settings, table: str, name: str) -> list[str]:
    engine = create_async_engine(settings.database_url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                text(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_name = :table AND column_name = :name"
                ),
                {"table": table, "name": name},
            )
            return [row[0] for row in rows]
    finally:
        await engine.dispose()


async def _execute(settings: Settings, statement: str) -> list[tuple[object, ...]]:
    """Run one statement in its own transaction; the rows it returns, if any."""
    engine = create_async_engine(settings.database_url, poolclass=pool.NullPool)
    try:
        async with engine.begin() as connection:
            result = await connection.execute(text(statement))
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        await engine.dispose()


async def _database_exists(settings: Settings) -> bool:
    url = make_url(settings.database_url)
    engine = create_async_engine(url.set(database="postgres"), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            found = await connection.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": url.database}
            )
            return found is not None
    finally:
        await engine.dispose()


async def _indexes(settings: Settings, table: str) -> set[str]:
    engine = create_async_engine(settings.database_url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                text("SELECT indexname FROM pg_indexes WHERE tablename = :table"), {"table": table}
            )
            return {row[0] for row in rows}
    finally:
        await engine.dispose()


LISTING_INDEXES = {
    "ix_api_keys_created_at_id",
    "ix_api_keys_owner_created_at_id",
    "ix_api_keys_name_pattern",
    "ix_api_keys_revoked_created_at_id",
    "ix_api_keys_expiring_created_at_id",
}


def _ok(result: CliResult) -> str:
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.returncode == 0, result.stderr
    return result.stdout


async def _sql(settings: Settings, statement: str) -> list[tuple[object, ...]]:
    engine = create_async_engine(settings.database_url, poolclass=pool.NullPool)
    try:
        async with engine.begin() as connection:
            result = await connection.execute(text(statement))
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        await engine.dispose()


_KEY = "SELECT rate_limit FROM api_keys WHERE name = 'old'"
_KEYS = "SELECT rate_limits, owner_rate_limits, version FROM api_keys WHERE name = 'old'"


async def _limit_revisions_keep_the_data(scratch: Settings) -> None:
    """0005 carries a key's one limit into `rate_limits` and back (the first enforced one);
    0006's triggers keep each key's copy of its owner's limits, moving its version."""
    _ok(await run_cli(scratch, "db", "downgrade", "0004_audit_log"))
    await _sql(
        scratch,
        "INSERT INTO api_keys (id, key_hash, display_prefix, name, owner, rate_limit) VALUES "
        "(gen_random_uuid(), repeat('0', 64), 'gk_old', 'old', 'acme', '5/minute')",
    )
    _ok(await run_cli(scratch, "db", "upgrade", "0006_owner_limits"))
    assert await _sql(scratch, _KEYS) == [(["5/minute"], [], 1)]
    await _sql(scratch, "INSERT INTO owner_limits (owner, rate_limits) VALUES ('acme', '{9/hour}')")
    assert await _sql(scratch, _KEYS) == [(["5/minute"], ["9/hour"], 2)]
    await _sql(scratch, "UPDATE api_keys SET owner = 'other' WHERE name = 'old'")
    assert await _sql(scratch, _KEYS) == [(["5/minute"], [], 3)]
    await _sql(scratch, "UPDATE api_keys SET owner = 'acme' WHERE name = 'old'")
    await _sql(scratch, "DELETE FROM owner_limits WHERE owner = 'acme'")
    assert await _sql(scratch, _KEYS) == [(["5/minute"], [], 5)]
    await _sql(
        scratch, "UPDATE api_keys SET rate_limits = '{1/second shadow,7/day}' WHERE name = 'old'"
    )
    _ok(await run_cli(scratch, "db", "downgrade", "0004_audit_log"))
    assert await _sql(scratch, _KEY) == [("7/day",)]
    assert "owner_limits" not in await _tables(scratch)
    await _sql(scratch, "DELETE FROM api_keys")
    _ok(await run_cli(scratch, "db", "upgrade"))
    assert "schema at head, no drift" in _ok(await run_cli(scratch, "db", "check"))


async def test_upgrade_downgrade_upgrade_with_check(scratch: Settings) -> None:
    head = migrations.head_revision(scratch)
    assert head is not None
    assert not await _database_exists(scratch)

    _ok(await run_cli(scratch, "db", "upgrade"))
    assert await _database_exists(scratch)
    assert {"alembic_version", "api_keys", "audit_log"} <= await _tables(scratch)
    assert "schema at head, no drift" in _ok(await run_cli(scratch, "db", "check"))
    assert f"current: {head}  head: {head}" in _ok(await run_cli(scratch, "db", "current"))

    assert head == "0010_usage_minute_index"

    # Key metadata and state on their own: down drops both columns, up adds them again with
    # their defaults on a key that existed before.
    for column in ("metadata", "enabled"):
        assert await _columns(scratch, "api_keys", column) == [column]
    _ok(await run_cli(scratch, "db", "downgrade", "0007_key_credits"))
    for column in ("metadata", "enabled"):
        assert await _columns(scratch, "api_keys", column) == []
    await _execute(
        scratch,
        "INSERT INTO api_keys (id, key_hash, display_prefix, name) "
        "VALUES (gen_random_uuid(), repeat('0', 64), 'gk_older', 'older')",
    )
    _ok(await run_cli(scratch, "db", "upgrade"))
    assert await _execute(scratch, "SELECT metadata = '{}'::jsonb, enabled FROM api_keys") == [
        (True, True)
    ]
    assert "schema at head, no drift" in _ok(await run_cli(scratch, "db", "check"))
    await _execute(scratch, "DELETE FROM api_keys")

    # The listing's indexes on their own: down drops exactly them and gives the owner index back.
    indexes = await _indexes(scratch, "api_keys")
    assert indexes >= LISTING_INDEXES
    assert "ix_api_keys_owner" not in indexes
    _ok(await run_cli(scratch, "db", "downgrade", "0008_key_metadata_state"))
    assert await _indexes(scratch, "api_keys") == (indexes - LISTING_INDEXES) | {
        "ix_api_keys_owner"
    }
    _ok(await run_cli(scratch, "db", "upgrade"))
    assert await _indexes(scratch, "api_keys") == indexes
    assert "schema at head, no drift" in _ok(await run_cli(scratch, "db", "check"))

    # The usage minute index's revision on its own: down drops the index, up restores it.
    assert await _indexes(scratch, "api_key_usage") == {
        "ix_api_key_usage_minute",
        "pk_api_key_usage",
    }
    _ok(await run_cli(scratch, "db", "downgrade", "0009_key_listing_indexes"))
    assert await _indexes(scratch, "api_key_usage") == {"pk_api_key_usage"}
    _ok(await run_cli(scratch, "db", "upgrade"))
    assert await _indexes(scratch, "api_key_usage") == {
        "ix_api_key_usage_minute",
        "pk_api_key_usage",
    }
    assert "schema at head, no drift" in _ok(await run_cli(scratch, "db", "check"))
    await _limit_revisions_keep_the_data(scratch)

    # The audit log's revision on its own: down removes exactly what it added, up restores it.
    assert await _columns(scratch, "api_keys", "created_by") == ["created_by"]
    _ok(await run_cli(scratch, "db", "downgrade", "0003_api_key_versions"))
    assert "audit_log" not in await _tables(scratch)
    assert await _columns(scratch, "api_keys", "created_by") == []
    _ok(await run_cli(scratch, "db", "upgrade"))
    assert "audit_log" in await _tables(scratch)
    assert "schema at head, no drift" in _ok(await run_cli(scratch, "db", "check"))

    _ok(await run_cli(scratch, "db", "downgrade", "base"))
    assert await _tables(scratch) == {"alembic_version"}
    behind = await run_cli(scratch, "db", "check")
    assert behind.returncode != 0
    assert "Traceback" not in behind.stderr
    assert behind.stderr_lines == [f"error: database at revision base, code at {head}"]

    _ok(await run_cli(scratch, "db", "upgrade"))
    assert "schema at head, no drift" in _ok(await run_cli(scratch, "db", "check"))


async def test_an_unmigrated_schema_is_refused_by_serve_and_answered_503(scratch: Settings) -> None:
    _ok(await run_cli(scratch, "db", "upgrade"))
    _ok(await run_cli(scratch, "db", "downgrade", "base"))
    head = migrations.head_revision(scratch)

    refused = await run_cli(scratch, "serve", "--port", str(free_port()), "--workers", "1")
    assert refused.returncode == 1
    assert refused.stderr_lines == [
        f"error: the database schema is at no revision, not at head {head}: "
        "run `gatekey db upgrade`"
    ]
    # An app already running when its tables go: every key check says why, none is a 500.
    async with running_app(scratch) as (_, client):
        for path in ("/v1/whoami", "/v1/auth", "/v1/usage"):
            response = await client.get(path, headers=key_header(unknown_key(scratch)))
            body = assert_problem(response, 503, "DATABASE_UNAVAILABLE")
            assert "gatekey db upgrade" in body["detail"]
