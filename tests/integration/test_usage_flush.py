"""Usage accounting end to end: admitted hits counted in Redis, flushed exactly to PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, func, select, text

from service.config import Settings
from service.db import Database
from service.harness.processes import wait_until_async
from service.keys.models import ApiKey
from service.ratelimit.limiter import RateLimiter, create_limiter
from service.ratelimit.policy import RateLimitPolicy
from service.redis import scripts
from service.redis.client import RedisClient, create_redis
from service.redis.keyspace import RedisKeyspace
from service.usage.flusher import UsageFlusher
from service.usage.models import ApiKeyUsage
from service.usage.service import get_usage
from tests.factories import create_key

HUNDRED_PER_HOUR = RateLimitPolicy(100, 3600)
GENEROUS = RateLimitPolicy(100_000, 60)


@dataclass(frozen=True, slots=True)
class UsageRig:
    """What every test here works with: three committed keys, a Redis client built as the app
    builds it (short timeouts, blocking pool), the test's namespace and a limiter on them."""

    database: Database
    client: RedisClient
    keyspace: RedisKeyspace
    limiter: RateLimiter
    key_ids: list[str]

    async def hits(self, key_id: str, count: int, policy: RateLimitPolicy = GENEROUS) -> int:
        """`count` concurrent hits; the number admitted."""
        decisions = await asyncio.gather(*(self.limiter.hit(key_id, policy) for _ in range(count)))
        assert not any(d.is_fallback for d in decisions)
        return sum(d.allowed for d in decisions)

    async def stored(self, key_id: str) -> int:
        async with self.database.get_session() as session:
            total = await session.scalar(
                select(func.coalesce(func.sum(ApiKeyUsage.count), 0)).where(
                    ApiKeyUsage.key_id == uuid.UUID(key_id)
                )
            )
        return int(total or 0)

    def flusher(
        self,
        *,
        on_flush: Callable[[int], None] | None = None,
        on_pending: Callable[[int], None] | None = None,
        interval_s: float = 0.1,
    ) -> UsageFlusher:
        """A flusher as each worker runs one, every 0.1 s unless told."""
        return UsageFlusher(
            self.client,
            self.database,
            interval_s=interval_s,
            keyspace=self.keyspace,
            on_flush=on_flush,
            on_pending=on_pending,
        )


@pytest.fixture
async def rig(
    database: Database, settings: Settings, keyspace: RedisKeyspace
) -> AsyncIterator[UsageRig]:
    """The keys are deleted afterwards, with their usage (by cascade)."""
    issued = [await create_key(database, settings, name=f"usage {i}") for i in range(3)]
    client = create_redis(settings)
    limiter = create_limiter(settings, redis=client, worker_count=1, keyspace=keyspace)
    try:
        yield UsageRig(database, client, keyspace, limiter, [str(k.record.id) for k in issued])
    finally:
        await limiter.aclose()
        await client.aclose()
        async with database.get_session() as session:
            ids = [k.record.id for k in issued]
            await session.execute(delete(ApiKey).where(ApiKey.id.in_(ids)))
            await session.commit()


async def test_flush_stores_exactly_the_admitted_hits_and_is_idempotent(rig: UsageRig) -> None:
    limited, busy, idle = rig.key_ids
    assert await rig.hits(limited, 250, HUNDRED_PER_HOUR) == 100
    assert await rig.hits(busy, 37) == 37
    assert await rig.hits("not-a-uuid", 5) == 5
    flushed: list[int] = []
    flusher = rig.flusher(on_flush=flushed.append)

    assert await flusher.flush() == 3
    assert (await rig.stored(limited), await rig.stored(busy)) == (100, 37)
    assert await rig.stored(idle) == 0
    assert await flusher.flush() == 0  # nothing dirty: nothing read, nothing written
    assert await rig.hits(busy, 13) == 13
    assert await flusher.flush() == 1
    assert await flusher.flush() == 0
    assert (await rig.stored(limited), await rig.stored(busy)) == (100, 50)

    async with rig.database.get_session() as session:
        summary = await get_usage(
            session=session, key_id=uuid.UUID(busy), since=datetime.now(UTC) - timedelta(hours=1)
        )
        last_used = await session.scalar(
            select(ApiKey.last_used_at).where(ApiKey.id == uuid.UUID(busy))
        )
    assert summary.total == 50
    assert sum(count for _, count in summary.minutes) == 50
    assert last_used == summary.minutes[-1][0]
    assert not await rig.client.exists(rig.keyspace.processing, rig.keyspace.flush_lock)


async def minute_now(client: RedisClient) -> int:
    """The current minute by Redis's clock, as the limiter's script counts it."""
    seconds, _ = await client.time()
    return int(seconds - seconds % 60)


@pytest.mark.parametrize("last_step", ["read", "store", "forget_final"])
async def test_a_flusher_killed_after_any_step_loses_and_doubles_nothing(
    rig: UsageRig, last_step: str
) -> None:
    key_id = rig.key_ids[0]
    old = await minute_now(rig.client) - 300  # five minutes ago: final, dropped once stored
    await rig.client.hset(rig.keyspace.usage(key_id), str(old), 7)
    assert await rig.hits(key_id, 40) == 40
    # A worker gets this far, then is SIGKILLed: lock and processing set stay behind. The lock
    # is set to outlive any slowness of the host; its expiry is then brought forward.
    crashed = rig.flusher()
    assert await rig.client.set(rig.keyspace.flush_lock, "dead-worker", px=600_000)
    claimed = await crashed.claim("dead-worker")
    assert claimed == [key_id]
    plan = await crashed.read(claimed)  # changes nothing outside the process
    if last_step != "read":
        await crashed.store(plan)
        assert await rig.stored(key_id) == 47
    if last_step == "forget_final":
        await crashed.forget_final(plan)
        assert not await rig.client.hexists(rig.keyspace.usage(key_id), str(old))

    assert await rig.hits(key_id, 25) == 25  # marked dirty again meanwhile
    survivor = rig.flusher()
    assert await survivor.flush() is None  # the dead worker's lock has not expired yet
    assert await rig.client.pexpire(rig.keyspace.flush_lock, 1)  # ...and now it expires

    async def lock_expired() -> bool:
        return not await rig.client.exists(rig.keyspace.flush_lock)

    await wait_until_async(lock_expired, what="the dead worker's lock to expire")
    assert await survivor.flush() == 1
    assert await rig.stored(key_id) == 72
    assert await survivor.flush() == 0
    assert await rig.stored(key_id) == 72
    assert not await rig.client.hexists(rig.keyspace.usage(key_id), str(old))
    assert not await rig.client.exists(rig.keyspace.processing, rig.keyspace.dirty)


def as_counts(usage: bytes) -> dict[int, int]:
    fields = usage.split()
    return dict(zip(map(int, fields[::2]), map(int, fields[1::2]), strict=True))


async def test_the_read_script_returns_every_counter_exactly(rig: UsageRig) -> None:
    busy, three_minutes, _ = rig.key_ids
    assert await rig.hits(busy, 37) == 37
    current = await minute_now(rig.client)
    spread = {current - 600: 5, current - 60: 11, current: 2}
    pairs = [value for item in spread.items() for value in item]
    await rig.client.hset(rig.keyspace.usage(three_minutes), items=pairs)
    read = scripts.register(rig.client, scripts.ScriptName.USAGE_READ)
    keys = [rig.keyspace.usage(k) for k in rig.key_ids]

    clock, *hashes = await read(keys=keys, args=[1000])
    assert current <= clock < current + 120
    assert sum(as_counts(hashes[0]).values()) == 37
    assert as_counts(hashes[1]) == spread
    assert hashes[2] == b""
    # Once the budget is spent no further key is read; the first always is.
    _, *first_only = await read(keys=keys, args=[1])
    assert first_only == hashes[:1]


async def test_a_backlog_of_long_hashes_is_read_a_few_keys_at_a_time(rig: UsageRig) -> None:
    current = await minute_now(rig.client)
    backlog = {current - 60 * (i + 2): i + 1 for i in range(30)}  # 30 final minutes each
    pairs = [value for item in backlog.items() for value in item]
    for key_id in rig.key_ids:
        await rig.client.hset(rig.keyspace.usage(key_id), items=pairs)
        await rig.client.sadd(rig.keyspace.dirty, key_id)
    assert await rig.hits(rig.key_ids[0], 9) == 9
    # Every hash outgrows a budget of one field: each read takes a single key.
    flusher = UsageFlusher(
        rig.client, rig.database, interval_s=0.1, keyspace=rig.keyspace, read_budget=1
    )
    assert await flusher.flush() == 3
    total = sum(backlog.values())
    assert [await rig.stored(k) for k in rig.key_ids] == [total + 9, total, total]
    left = await rig.client.hkeys(rig.keyspace.usage(rig.key_ids[0]))
    assert all(int(minute) >= current - 60 for minute in left)  # the final ones went
    assert not await rig.client.exists(*(rig.keyspace.usage(k) for k in rig.key_ids[1:]))


async def test_a_count_that_arrives_after_the_read_is_not_dropped(rig: UsageRig) -> None:
    """A late hand-over of deferred usage into a final minute, between read and clean-up."""
    key_id = rig.key_ids[0]
    old = await minute_now(rig.client) - 300
    await rig.client.hset(rig.keyspace.usage(key_id), str(old), 7)
    flusher = rig.flusher()
    plan = await flusher.read([key_id])
    await flusher.store(plan)
    await rig.client.hincrby(rig.keyspace.usage(key_id), str(old), 2)
    await rig.client.sadd(rig.keyspace.dirty, key_id)
    await flusher.forget_final(plan)
    assert await rig.client.hget(rig.keyspace.usage(key_id), str(old)) == b"9"
    assert await flusher.flush() == 1
    assert await rig.stored(key_id) == 9
    assert not await rig.client.exists(rig.keyspace.usage(key_id))


async def test_a_flush_rewrites_only_the_minutes_that_moved(rig: UsageRig) -> None:
    key_id = rig.key_ids[0]
    current = await minute_now(rig.client)
    usage = rig.keyspace.usage(key_id)
    await rig.client.hset(usage, mapping={str(current - 60): 7, str(current): 1})
    await rig.client.sadd(rig.keyspace.dirty, key_id)
    flusher = rig.flusher()
    assert await flusher.flush() == 1
    before = await row_versions(rig, key_id)

    await rig.client.hincrby(usage, str(current), 4)
    await rig.client.sadd(rig.keyspace.dirty, key_id)
    assert await flusher.flush() == 1
    after = await row_versions(rig, key_id)
    assert await rig.stored(key_id) == 12
    # A new row version only for the minute that moved; `last_used_at` had nowhere to go.
    assert (after["previous"], after["key"]) == (before["previous"], before["key"])
    assert after["current"] != before["current"]


async def row_versions(rig: UsageRig, key_id: str) -> dict[str, int]:
    """The transaction that last wrote each row (PostgreSQL's `xmin`): a rewrite changes it."""
    async with rig.database.get_session() as session:
        minutes = await session.execute(
            text("SELECT xmin::text::bigint FROM api_key_usage WHERE key_id = :id ORDER BY minute"),
            {"id": uuid.UUID(key_id)},
        )
        key = await session.scalar(
            text("SELECT xmin::text::bigint FROM api_keys WHERE id = :id"),
            {"id": uuid.UUID(key_id)},
        )
    previous, current = minutes.scalars()
    return {"previous": previous, "current": current, "key": int(key or 0)}


async def test_final_minutes_leave_redis_once_stored(rig: UsageRig) -> None:
    key_id = rig.key_ids[0]
    seconds, _ = await rig.client.time()
    current = seconds - seconds % 60
    old = current - 300  # five minutes ago: final
    await rig.client.hset(rig.keyspace.usage(key_id), str(old), 7)
    assert await rig.hits(key_id, 3) == 3
    assert await rig.flusher().flush() == 1

    left = await rig.client.hgetall(rig.keyspace.usage(key_id))
    assert {int(minute) for minute in left} <= {current, current - 60}
    assert sum(int(count) for count in left.values()) == 3
    async with rig.database.get_session() as session:
        everything = await get_usage(
            session=session, key_id=uuid.UUID(key_id), since=datetime.fromtimestamp(old, UTC)
        )
        recent = await get_usage(
            session=session,
            key_id=uuid.UUID(key_id),
            since=datetime.fromtimestamp(old + 60, UTC),
        )
    assert everything.minutes[0] == (datetime.fromtimestamp(old, UTC), 7)
    assert (everything.total, recent.total) == (10, 3)


async def test_a_periodic_flush_skips_when_another_process_has_just_flushed(
    rig: UsageRig,
) -> None:
    key_id = rig.key_ids[0]
    # An interval no test outlasts: the marker a complete flush leaves stays until removed.
    first, second = (rig.flusher(interval_s=600) for _ in range(2))
    assert await rig.hits(key_id, 3) == 3
    assert await first.flush(unless_recent=True) == 1
    assert await rig.hits(key_id, 4) == 4
    assert await second.flush(unless_recent=True) is None
    assert await first.flush(unless_recent=True) is None  # the one that flushed waits as well
    assert await second.flush() == 1  # the last flush before a stop never waits
    assert await rig.stored(key_id) == 7
    assert await rig.hits(key_id, 5) == 5
    assert await rig.client.delete(rig.keyspace.flushed) == 1  # ...as if the interval passed
    assert await second.flush(unless_recent=True) == 1
    assert await rig.stored(key_id) == 12


async def test_flushers_in_several_workers_store_each_hit_once(rig: UsageRig) -> None:
    flushes: list[int] = []
    pending: list[int] = []
    flushers = [rig.flusher(on_flush=flushes.append, on_pending=pending.append) for _ in range(3)]
    stop = asyncio.Event()
    runs = [asyncio.create_task(flusher.run(stop)) for flusher in flushers]
    expected = dict.fromkeys(rig.key_ids, 0)
    for round_number in range(5):
        for i, key_id in enumerate(rig.key_ids):
            expected[key_id] += await rig.hits(key_id, 10 * (i + 1) + round_number)
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(asyncio.gather(*runs), timeout=5)
    assert {key_id: await rig.stored(key_id) for key_id in rig.key_ids} == expected
    assert sum(expected.values()) == 5 * (10 + 20 + 30) + 3 * (0 + 1 + 2 + 3 + 4)
    assert sum(flushes) >= len(rig.key_ids)
    # Each worker reports the shared backlog; the final flush left none.
    assert 0 in pending
    assert not await rig.client.exists(
        rig.keyspace.dirty, rig.keyspace.processing, rig.keyspace.flush_lock
    )
