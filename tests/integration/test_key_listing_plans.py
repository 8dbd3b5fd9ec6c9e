"""The key listing's query plans at a million keys: every shape is an ordered index range that
stops at its page, never a sequential scan or a sort of the table.

The million rows are inserted by one `INSERT ... SELECT` inside the test's own transaction, which
is rolled back: no other test sees them. `-s` prints each plan and the time the rows took.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import Database
from service.keys.listing import KeyCursor, KeyState
from service.keys.repository import page_query

KEYS = 1_000_000
PAGE = 100
BASE = datetime(2020, 1, 1, tzinfo=UTC)
# Key i (1..KEYS): created at BASE + i // 2 seconds (pairs share a time: the id breaks the tie),
# owned by one of 1,000 owners, named `batch-<i % 1000>-<i in 7 digits>`; every 10th revoked,
# every 10th+5 expired, the other 80% active. Hashes start with `plan`, which no real (hex) hash
# does. Ids and hashes ascend with i, names and owners within each of their 1,000 groups: every
# index fills at its right edge or at 1,000 such places, a third of the time random keys take.
_INSERT = text(
    """
    INSERT INTO api_keys (id, key_hash, display_prefix, name, owner, created_at, revoked_at,
                          expires_at)
    SELECT lpad(to_hex(i), 32, '0')::uuid,
           'plan' || lpad(i::text, 7, '0'),
           'gk_plan',
           'batch-' || (i % 1000) || '-' || lpad(i::text, 7, '0'),
           'plan-owner-' || (i % 1000),
           CAST(:base AS timestamptz) + (i / 2) * interval '1 second',
           CASE WHEN i % 10 = 0 THEN CAST(:base AS timestamptz) END,
           CASE WHEN i % 10 = 5 THEN CAST(:base AS timestamptz) END
    FROM generate_series(1, :keys) AS i
    """
)
_SECONDARY_INDEXES = text(
    "SELECT indexname, indexdef FROM pg_indexes "
    "WHERE schemaname = current_schema() AND tablename = 'api_keys' "
    "AND indexname LIKE 'ix!_%' ESCAPE '!' ORDER BY indexname"
)
MIDDLE = KeyCursor(BASE + timedelta(seconds=KEYS // 4), uuid.UUID(int=KEYS // 2))

# name: (filters, the index the page must be read from)
SHAPES: dict[str, tuple[dict[str, Any], str]] = {
    "no filter (active)": ({}, "ix_api_keys_created_at_id"),
    "state=all": ({"state": KeyState.ALL}, "ix_api_keys_created_at_id"),
    "owner": ({"owner": "plan-owner-7"}, "ix_api_keys_owner_created_at_id"),
    # 1,000 names: their range of the name index, then a sort of those (not of the table).
    "name prefix": ({"name_prefix": "batch-7-"}, "ix_api_keys_name_pattern"),
    # Every name: walking the creation order and checking each name is the cheaper plan.
    "name prefix of all": ({"name_prefix": "batch-"}, "ix_api_keys_created_at_id"),
    "state=revoked": ({"state": KeyState.REVOKED}, "ix_api_keys_revoked_created_at_id"),
    "state=expired": ({"state": KeyState.EXPIRED}, "ix_api_keys_expiring_created_at_id"),
}


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from _nodes(child)


async def _explain(session: AsyncSession, filters: dict[str, Any], after: KeyCursor | None) -> Any:
    statement = page_query(
        owner=filters.get("owner"),
        name_prefix=filters.get("name_prefix"),
        state=filters.get("state", KeyState.ACTIVE),
        after=after,
        limit=PAGE + 1,
        now=datetime.now(UTC),
    )
    connection = await session.connection()
    sql = statement.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True})
    explained = await session.execute(text(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}"))
    return explained.scalar_one()[0]["Plan"]


@pytest.fixture
async def vacuumed_afterwards(database: Database) -> AsyncIterator[None]:
    """After the test's transaction is rolled back: the table's indexes are the ones it had, and
    VACUUM ANALYZE leaves neither the million dead rows nor their row count to later tests."""
    async with database.engine.connect() as connection:
        before = (await connection.execute(_SECONDARY_INDEXES)).all()
    yield
    started = time.monotonic()
    async with database.engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        assert (await connection.execute(_SECONDARY_INDEXES)).all() == before
        await connection.execute(text("VACUUM ANALYZE api_keys"))
    print(f"\napi_keys vacuumed in {time.monotonic() - started:.1f} s")  # noqa: T201


@pytest.fixture
async def million_keys(vacuumed_afterwards: None, session: AsyncSession) -> AsyncSession:
    """A million keys in the test's transaction (set up after, so rolled back before, the
    vacuum). The table's secondary indexes are dropped for the insert and then built again from
    their own definitions in the catalog (the migrations' indexes, names and all): a sorted
    build costs a fraction of a million insertions into each. The rollback restores the
    originals, untouched by the million rows; no other test runs while the table is locked."""
    started = time.monotonic()
    await session.execute(text("SET LOCAL lock_timeout = '10s'"))
    definitions = (await session.execute(_SECONDARY_INDEXES)).all()
    assert {name for name, _ in definitions} >= {index for _, index in SHAPES.values()}
    await session.execute(text(f"DROP INDEX {', '.join(name for name, _ in definitions)}"))
    await session.execute(_INSERT, {"base": BASE, "keys": KEYS})
    for _, definition in definitions:
        await session.execute(text(definition))
    # A sample ten times the default (300,000 rows): the estimate of a 1-in-1,000 name prefix
    # then no longer swings between runs enough to flip the plan this test asserts.
    await session.execute(text("SET LOCAL default_statistics_target = 1000"))
    await session.execute(text("ANALYZE api_keys"))
    elapsed = time.monotonic() - started
    print(f"\n{KEYS:,} keys inserted and analysed in {elapsed:.1f} s")  # noqa: T201
    return session


async def test_every_listing_shape_reads_an_index_range_of_one_page(
    million_keys: AsyncSession,
) -> None:
    for name, (filters, index) in SHAPES.items():
        for after in (None, MIDDLE):
            plan = await _explain(million_keys, filters, after)
            label = f"{name}, {'after a cursor' if after else 'first page'}"
            print(f"\n--- {label}\n{json.dumps(plan, indent=1)}")  # noqa: T201
            nodes = list(_nodes(plan))
            assert plan["Node Type"] == "Limit", label
            assert plan["Actual Rows"] == PAGE + 1, label
            assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], label
            assert index in {n.get("Index Name") for n in nodes}, label
            # Rows read, kept or filtered out: a page and what its filters skip, never the table
            # (summed over the nodes, so a row a bitmap scan passes on counts twice: the name
            # prefix's 1,000 rows read through a bitmap come to about 2,200).
            read = sum(n["Actual Rows"] + n.get("Rows Removed by Filter", 0) for n in nodes)
            assert read < 30 * PAGE, (label, read)
