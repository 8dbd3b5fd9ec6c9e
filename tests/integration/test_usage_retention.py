"""Usage retention: exactly the rows older than the retention go, oldest first, at most 10,000 per
statement and a bounded number per cycle, one process per interval; the metric counts each row."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import delete, text

from service.config import Settings
from service.db import Database
from service.harness.processes import wait_until_async
from service.keys.models import ApiKey
from service.metrics import Metrics
from service.redis.client import RedisClient, create_redis
from service.redis.keyspace import RedisKeyspace
from service.usage.pruner import BATCH_SIZE, UsagePruner
from tests.factories import create_key
from tests.integration.servers import scrape, serve_settings, serving

# Longer than any other test's rows reach back, so every expired row in the database is ours.
RETENTION = timedelta(days=400)
OLD_ROWS = 2 * BATCH_SIZE + 3  # more than one cycle of two batches holds
NEW_ROWS = 30


@pytest.fixture
async def redis_client(settings: Settings) -> AsyncIterator[RedisClient]:
    client = create_redis(settings)
    yield client
    await client.aclose()


@pytest.fixture
async def keys(database: Database, settings: Settings) -> AsyncIterator[list[uuid.UUID]]:
    """Two keys: `OLD_ROWS` minutes before the retention and `NEW_ROWS` just inside it, split
    between them; deleted afterwards with their usage."""
    ids = [(await create_key(database, settings, name=f"retention {n}")).record.id for n in (1, 2)]
    a, b = ids
    async with database.get_session() as session:
        # Minute i before the cut (i = 1 the newest expired row), alternating between the keys;
        # new rows from 10 minutes inside the retention on, so none expires while the test runs.
        await session.execute(
            text(
                """
                INSERT INTO api_key_usage (key_id, minute, count)
                SELECT CASE WHEN i % 2 = 0 THEN CAST(:a AS uuid) ELSE CAST(:b AS uuid) END,
                       date_trunc('minute', now() - CAST(:retention AS interval))
                           + make_interval(mins => :shift - i),
                       i
                FROM generate_series(1, :n) AS i
                """
            ),
            [
                {"a": a, "b": b, "retention": RETENTION, "shift": 0, "n": OLD_ROWS},
                {"a": a, "b": b, "retention": RETENTION, "shift": 10 + NEW_ROWS, "n": NEW_ROWS},
            ],
        )
        await session.commit()
    yield ids
    async with database.get_session() as session:
        await session.execute(delete(ApiKey).where(ApiKey.id.in_(ids)))
        await session.commit()


async def _counts(database: Database, ids: list[uuid.UUID]) -> tuple[int, int, int]:
    """Expired rows in the whole table, our rows inside the retention, the oldest count left."""
    async with database.get_session() as session:
        row = (
            await session.execute(
                text(
                    """
                    SELECT count(*) FILTER (WHERE minute < now() - CAST(:retention AS interval)),
                           count(*) FILTER (WHERE minute >= now() - CAST(:retention AS interval)
                                            AND key_id = ANY(:ids)),
                           max(count) FILTER (WHERE key_id = ANY(:ids)
                                              AND minute < now() - CAST(:retention AS interval))
                    FROM api_key_usage
                    """
                ),
                {"retention": RETENTION, "ids": ids},
            )
        ).one()
    return int(row[0]), int(row[1]), int(row[2] or 0)


async def test_prunes_exactly_the_expired_rows_in_bounded_batches_one_process_at_a_time(
    database: Database,
    redis_client: RedisClient,
    keyspace: RedisKeyspace,
    keys: list[uuid.UUID],
) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)

    def pruned_metric() -> float:
        return float(registry.get_sample_value("gatekey_usage_pruned_rows_total") or 0)

    def pruner() -> UsagePruner:
        """As each worker builds one, but two batches per cycle."""
        return UsagePruner(
            redis_client,
            database,
            retention=RETENTION,
            keyspace=keyspace,
            max_batches=2,
            on_pruned=metrics.usage_pruned_rows.inc,
        )

    assert await _counts(database, keys) == (OLD_ROWS, NEW_ROWS, OLD_ROWS)
    first, second = pruner(), pruner()

    # Two statements of at most BATCH_SIZE, the oldest rows first (count i = minute i before
    # the cut, so what is left is the newest three expired minutes).
    assert await first.prune() == [BATCH_SIZE, BATCH_SIZE]
    assert await _counts(database, keys) == (3, NEW_ROWS, 3)
    assert pruned_metric() == 2 * BATCH_SIZE

    # Another process within the interval: the gate is taken, nothing is done.
    assert await second.prune() is None
    assert await _counts(database, keys) == (3, NEW_ROWS, 3)

    # The gate expires (deleted here rather than waited for): the next cycle takes the rest and
    # stops at the first batch short of full.
    await redis_client.delete(keyspace.prune_gate)
    assert await second.prune() == [3]
    assert await _counts(database, keys) == (0, NEW_ROWS, 0)
    assert pruned_metric() == OLD_ROWS

    await redis_client.delete(keyspace.prune_gate)
    assert await first.prune() == [0]
    assert pruned_metric() == OLD_ROWS
    # Gate TTL is the interval: the key expires by itself.
    assert 0 < await redis_client.pttl(keyspace.prune_gate) <= 60_000


async def test_a_busy_pool_makes_the_pruner_wait_a_turn_not_queue(
    settings: Settings, redis_client: RedisClient, keyspace: RedisKeyspace, keys: list[uuid.UUID]
) -> None:
    one = Database(
        settings.model_copy(update={"database_pool_size": 1, "database_pool_max_overflow": 0})
    )
    pruner = UsagePruner(redis_client, one, retention=RETENTION, keyspace=keyspace)
    try:
        async with one.get_session() as held:
            await held.execute(text("SELECT 1"))  # a request holds the only connection
            assert await pruner.prune() == []
        assert await _counts(one, keys) == (OLD_ROWS, NEW_ROWS, OLD_ROWS)
        await redis_client.delete(keyspace.prune_gate)
        assert await pruner.prune() == [BATCH_SIZE, BATCH_SIZE, 3]
        assert await _counts(one, keys) == (0, NEW_ROWS, 0)
    finally:
        await one.dispose()


async def test_the_background_job_prunes_at_once_and_logs_only_cycles_that_pruned(
    database: Database,
    redis_client: RedisClient,
    keyspace: RedisKeyspace,
    keys: list[uuid.UUID],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gatekey.usage")

    async def run_one_cycle(until: Callable[[], Awaitable[bool]]) -> None:
        """The job as a worker runs it; stopped once `until` holds (a cycle ends before the job
        looks at its stop event, and the next is an interval away)."""
        stop = asyncio.Event()
        job = asyncio.create_task(
            UsagePruner(redis_client, database, retention=RETENTION, keyspace=keyspace).run(stop)
        )
        await wait_until_async(until, what="a prune cycle", timeout_s=30)
        stop.set()
        await asyncio.wait_for(job, timeout=30)

    async def all_expired_gone() -> bool:
        return await _counts(database, keys) == (0, NEW_ROWS, 0)

    await run_one_cycle(all_expired_gone)
    await redis_client.delete(keyspace.prune_gate)

    async def gate_taken() -> bool:
        return bool(await redis_client.exists(keyspace.prune_gate))

    await run_one_cycle(gate_taken)  # a cycle with nothing expired

    pruned = [r.__dict__ for r in caplog.records if r.getMessage() == "usage_pruned"]
    assert [(r["rows"], r["batches"], r["backlog"]) for r in pruned] == [(OLD_ROWS, 3, False)]
    assert await all_expired_gone()


async def test_serve_workers_prune_once_and_the_scraped_metric_is_exact(
    database: Database, settings: Settings, keys: list[uuid.UUID], tmp_path: Path
) -> None:
    """`gatekey serve --workers 2`: both workers start a cycle at once, the gate lets one prune
    (all of it: three batches of the five a cycle allows), the scrape sums both workers."""
    retention = f"{RETENTION.days}d"
    with serving(
        serve_settings(settings, usage_retention=retention), tmp_path, workers=2
    ) as server:

        async def all_expired_gone() -> bool:
            return await _counts(database, keys) == (0, NEW_ROWS, 0)

        await wait_until_async(all_expired_gone, what="expired usage pruned", server=server)
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
            scraped = await scrape(client)
        by_pid = server.counts_by_pid("gatekey_usage_pruned_rows_total")
        log_lines = [line for line in server.log.read_text().splitlines() if "usage_pruned" in line]
    assert scraped.total("gatekey_usage_pruned_rows_total") == OLD_ROWS
    assert sorted(by_pid.values())[-1] == OLD_ROWS  # one worker did it all
    assert sum(by_pid.values()) == OLD_ROWS
    assert len(log_lines) == 1, log_lines
