"""Bulk key creation (`keys create --count N --json`): an INSERT per 1,000 keys, each usable."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from service.config import Settings
from service.db import Database
from service.errors import InvalidInput
from service.keys import service
from service.keys.format import KeyFormat
from service.keys.models import ApiKey
from tests.factories import (
    TEST_ACTOR,
    count_statements,
    key_header,
    run_cli,
    running_app,
    unique_owner,
)


@pytest.fixture
def key_format(settings: Settings) -> KeyFormat:
    return KeyFormat.from_settings(settings)


async def stored_by_id(session: AsyncSession, owner: str) -> dict[uuid.UUID, ApiKey]:
    rows = await session.scalars(select(ApiKey).where(ApiKey.owner == owner))
    return {row.id: row for row in rows}


async def test_2500_keys_are_three_inserts_and_each_is_stored_with_its_hash(
    session: AsyncSession, database: Database, key_format: KeyFormat
) -> None:
    owner = unique_owner("bulk")
    before = datetime.now(UTC)
    with count_statements(database.engine) as statements:
        minted = await service.create_keys(
            actor=TEST_ACTOR,
            session=session,
            key_format=key_format,
            count=2500,
            name=" load test ",
            owner=owner,
            scopes=["read", "admin"],
            rate_limits=["100 / minute"],
            expires_in=timedelta(hours=1),
        )
    inserts = [s.split("(")[0].strip() for s in statements if s.lstrip().startswith("INSERT")]
    # Three of keys, and the audit entries (one per key) as one batched statement.
    assert inserts == ["INSERT INTO api_keys"] * 3 + ["INSERT INTO audit_log"], statements
    audited = await session.scalar(
        text("SELECT count(*) FROM audit_log WHERE action = 'create' AND key_id = ANY(:ids)"),
        {"ids": [key.record.id for key in minted]},
    )
    assert audited == 2500
    assert len(minted) == 2500
    assert len({key.plaintext for key in minted}) == 2500
    assert all(key_format.is_well_formed(key.plaintext) for key in minted)
    stored = await stored_by_id(session, owner)
    assert set(stored) == {key.record.id for key in minted}
    for key in minted:
        row = stored[key.record.id]
        assert row.key_hash == key_format.hash(key.plaintext)
        assert row.display_prefix == key_format.display_prefix(key.plaintext)
    row = stored[minted[-1].record.id]
    assert (row.name, row.scopes, row.rate_limits) == (
        "load test",
        ["admin", "read"],
        ["100/minute"],
    )
    assert row.expires_at is not None
    assert timedelta(hours=1) <= row.expires_at - before <= timedelta(hours=1, seconds=30)
    assert row.revoked_at is None


async def test_bad_input_creates_no_key(session: AsyncSession, key_format: KeyFormat) -> None:
    owner = unique_owner("bulk")
    with pytest.raises(InvalidInput, match="count must be 1 to 1,000,000"):
        await service.create_keys(
            actor=TEST_ACTOR, session=session, key_format=key_format, count=0, name="x"
        )
    with pytest.raises(InvalidInput, match="invalid rate limit '100/week'"):
        await service.create_keys(
            actor=TEST_ACTOR,
            session=session,
            key_format=key_format,
            count=5,
            name="x",
            owner=owner,
            rate_limits=["100/week"],
        )
    assert await stored_by_id(session, owner) == {}


async def test_cli_prints_one_json_line_per_key_and_each_key_answers(
    settings: Settings, database: Database
) -> None:
    owner = unique_owner("bulk-cli")
    args = ("--name", "bulk", "--owner", owner, "--rate-limit", "5/minute", "--json")
    result = await run_cli(settings, "keys", "create", "--count", "3", *args)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [set(line) for line in lines] == [{"id", "key"}] * 3
    async with database.get_session() as session:
        stored = await stored_by_id(session, owner)
    assert set(stored) == {uuid.UUID(line["id"]) for line in lines}
    assert {tuple(row.rate_limits) for row in stored.values()} == {("5/minute",)}
    async with running_app(settings) as (_, client):
        for line in lines:
            response = await client.get("/v1/whoami", headers=key_header(line["key"]))
            assert response.status_code == 200, response.text
            assert response.json()["id"] == line["id"]


async def test_cli_count_without_json_is_a_usage_error_and_creates_nothing(
    settings: Settings, database: Database
) -> None:
    owner = unique_owner("bulk-cli")
    result = await run_cli(
        settings, "keys", "create", "--count", "2", "--name", "x", "--owner", owner
    )
    assert result.returncode == 2
    assert result.stderr_lines == ["error: --count prints the keys as JSON lines: add --json"]
    async with database.get_session() as session:
        assert await stored_by_id(session, owner) == {}
