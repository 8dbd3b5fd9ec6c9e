"""The Redis limiter against real Redis: exact across clients, NOSCRIPT, hung and dead servers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import uvloop
from redis.exceptions import RedisError

from service.config import RedisErrorPolicy, Settings
from service.harness.processes import free_port, wait_until_async
from service.ratelimit.decision import RateLimitDecision
from service.ratelimit.deferred_usage import DeferredUsage
from service.ratelimit.limiter import RateLimiter, create_limiter
from service.ratelimit.policy import RateLimitPolicy
from service.redis.client import create_redis
from service.redis.keyspace import RedisKeyspace
from tests.factories import flush_scripts_until
from tests.integration.servers import redis_server

HUNDRED_PER_HOUR = RateLimitPolicy(100, 3600)
# A hit that waited for a hung Redis would wait as long as it hangs (forever in the tests below,
# which resume it only afterwards); one the deadline or the open breaker decides takes
# REDIS_TIMEOUT (50 ms) at most, plus whatever a loaded host adds, which stays far below this.
NEVER_BLOCKS_S = 1.0
# Redis reports times in microseconds, the limiter in seconds: rounding, not time.
EPSILON_S = 1e-3
# A wait for Redis to be used again: normally one breaker cooldown (0.5 s).
RESUMES_WITHIN_S = 30.0


@asynccontextmanager
async def limiter_on(
    settings: Settings, keyspace: RedisKeyspace, *, worker_count: int = 1
) -> AsyncIterator[tuple[RateLimiter, list[str]]]:
    """A limiter on its own client, as another process would have; yields it and its decisions."""
    client = create_redis(settings)
    decisions: list[str] = []
    limiter = create_limiter(
        settings,
        redis=client,
        worker_count=worker_count,
        on_decision=decisions.append,
        keyspace=keyspace,
    )
    try:
        yield limiter, decisions
    finally:
        await limiter.aclose()
        await client.aclose()


async def burst(
    limiters: list[RateLimiter], key_id: str, count: int, policy: RateLimitPolicy
) -> list[RateLimitDecision]:
    """`count` concurrent hits on one key, spread over the limiters round-robin."""
    return await asyncio.gather(
        *(limiters[i % len(limiters)].hit(key_id, policy) for i in range(count))
    )


def assert_exact(decisions: list[RateLimitDecision], limit: int) -> None:
    assert not any(d.is_fallback for d in decisions)
    admitted = [d for d in decisions if d.allowed]
    assert len(admitted) == limit
    # Each admission saw a different number of requests still left: none was counted twice.
    assert sorted(d.remaining for d in admitted) == list(range(limit))


async def test_burst_across_clients_admits_exactly_the_limit_and_counts_usage(
    settings: Settings, keyspace: RedisKeyspace, redis: aioredis.Redis
) -> None:
    key_id = str(uuid.uuid4())
    async with (
        limiter_on(settings, keyspace) as (first, first_log),
        limiter_on(settings, keyspace) as (second, second_log),
        limiter_on(settings, keyspace) as (third, third_log),
    ):
        decisions = await burst([first, second, third], key_id, 1000, HUNDRED_PER_HOUR)
    assert_exact(decisions, 100)
    log = first_log + second_log + third_log
    assert (log.count("allowed"), log.count("limited"), len(log)) == (100, 900, 1000)
    usage = await redis.hgetall(keyspace.usage(key_id))
    assert sum(int(count) for count in usage.values()) == 100
    assert await redis.sismember(keyspace.dirty, key_id)
    assert 0 < await redis.ttl(keyspace.usage(key_id)) <= 2 * 86400


async def test_sequential_hits_drop_remaining_by_one(
    settings: Settings, keyspace: RedisKeyspace
) -> None:
    key_id = str(uuid.uuid4())
    async with limiter_on(settings, keyspace) as (limiter, _):
        started = time.monotonic()
        decisions = [await limiter.hit(key_id, HUNDRED_PER_HOUR) for _ in range(10)]
        elapsed = time.monotonic() - started
        assert [d.remaining for d in decisions] == list(range(99, 89, -1))
        assert all(d.allowed and d.retry_after_s == 0 for d in decisions)
        # Hit n: the quota is full again n emission intervals (36 s) after the first hit, less
        # the time since that hit (at most `elapsed`, however slow the host).
        for n, decision in enumerate(decisions, start=1):
            assert 36 * n - elapsed - EPSILON_S <= decision.reset_s <= 36 * n, (n, elapsed)
        two_per_minute = RateLimitPolicy(2, 60)
        other = str(uuid.uuid4())
        started = time.monotonic()
        first, second, refused = [await limiter.hit(other, two_per_minute) for _ in range(3)]
        elapsed = time.monotonic() - started
    assert (first.remaining, second.remaining) == (1, 0)
    assert (refused.allowed, refused.remaining, refused.limit, refused.window_s) == (
        False,
        0,
        2,
        60,
    )
    assert 30.0 - elapsed - EPSILON_S <= refused.retry_after_s <= 30.0
    assert 60.0 - elapsed - EPSILON_S <= refused.reset_s <= 60.0


async def test_script_flush_during_a_burst_is_invisible(
    settings: Settings, keyspace: RedisKeyspace, redis: aioredis.Redis
) -> None:
    key_id = str(uuid.uuid4())
    async with (
        limiter_on(settings, keyspace) as (first, _),
        limiter_on(settings, keyspace) as (second, _),
    ):
        await first.hit(str(uuid.uuid4()), HUNDRED_PER_HOUR)  # the script is cached now
        await second.hit(str(uuid.uuid4()), HUNDRED_PER_HOUR)
        await redis.script_flush()
        stop = asyncio.Event()
        # At every turn of the loop, so flushes land between and during pipelines.
        flusher = asyncio.create_task(flush_scripts_until(redis, stop, pause_s=0))
        decisions = []
        for _ in range(10):  # ten waves
            decisions += await burst([first, second], key_id, 100, HUNDRED_PER_HOUR)
        stop.set()
        assert await flusher > 0
        assert await first.health() == await second.health() == "ok"
    assert_exact(decisions, 100)


async def _burst_while_the_loop_is_blocked(settings: Settings) -> list[RateLimitDecision]:
    loop = asyncio.get_running_loop()

    def block_loop(iterations: int) -> None:
        # 150 ms per iteration, longer than the 100 ms deadline: the replies arrive meanwhile
        # and the next iteration sees them and the expired timer together, as under CPU
        # starvation. A plain asyncio.timeout() turns this burst into fallbacks.
        time.sleep(0.15)
        if iterations > 1:
            loop.call_soon(block_loop, iterations - 1)

    keyspace = RedisKeyspace(f"gktest-{uuid.uuid4().hex[:12]}")
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        async with limiter_on(settings, keyspace) as (limiter, _):
            await limiter.hit(str(uuid.uuid4()), HUNDRED_PER_HOUR)  # connected
            # Iteration 1 queues the hits and 2 sends their batch: blocking 1 to 4 covers it.
            loop.call_soon(block_loop, 4)
            return await burst([limiter], str(uuid.uuid4()), 300, HUNDRED_PER_HOUR)
    finally:
        await client.delete(*[key async for key in client.scan_iter(f"{keyspace.namespace}:*")])
        await client.aclose()


@pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
def test_a_blocked_event_loop_does_not_turn_answers_into_fallbacks(
    settings: Settings, run: Callable[[Coroutine[Any, Any, list[RateLimitDecision]]], Any]
) -> None:
    # A loop of its own in a thread of its own: uvloop as `gatekey serve` runs, and the default.
    with ThreadPoolExecutor(1) as thread:
        decisions = thread.submit(run, _burst_while_the_loop_is_blocked(settings)).result(30)
    assert_exact(decisions, 100)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A redis-server of this test's own on a free port, killed by pid afterwards."""
    with redis_server(tmp_path) as server:
        yield server.process, server.url


async def timed_hits(
    limiter: RateLimiter, key_id: str, count: int, policy: RateLimitPolicy
) -> list[tuple[float, RateLimitDecision]]:
    async def one() -> tuple[float, RateLimitDecision]:
        started = time.perf_counter()
        decision = await limiter.hit(key_id, policy)
        return time.perf_counter() - started, decision

    return await asyncio.gather(*(one() for _ in range(count)))


async def redis_decides_again(limiter: RateLimiter) -> None:
    """Until a hit is decided by Redis rather than the fallback (bounded)."""

    async def decided_by_redis() -> bool:
        return not (await limiter.hit(str(uuid.uuid4()), HUNDRED_PER_HOUR)).is_fallback

    await wait_until_async(decided_by_redis, what="limiting by Redis", timeout_s=RESUMES_WITHIN_S)


async def test_hung_then_dead_redis_never_blocks_and_limiting_resumes(
    own_redis: tuple[subprocess.Popen[bytes], str], keyspace: RedisKeyspace
) -> None:
    server, url = own_redis
    settings = Settings(redis_url=url, rate_limit_on_redis_error=RedisErrorPolicy.LOCAL)
    async with limiter_on(settings, keyspace, worker_count=4) as (limiter, log):
        assert not (await limiter.hit(str(uuid.uuid4()), HUNDRED_PER_HOUR)).is_fallback

        os.kill(server.pid, signal.SIGSTOP)  # connections still accept, nothing answers
        sequential = [await timed_hits(limiter, "hung-a", 1, HUNDRED_PER_HOUR) for _ in range(10)]
        concurrent = await timed_hits(limiter, "hung-b", 100, HUNDRED_PER_HOUR)
        timings = [pair for batch in sequential for pair in batch] + concurrent
        assert max(elapsed for elapsed, _ in timings) < NEVER_BLOCKS_S
        assert all(decision.is_fallback for _, decision in timings)
        assert sum(decision.allowed for _, decision in concurrent) == 25  # 100 / 4 workers
        assert await limiter.health() == "degraded"
        assert log.count("fallback") == 110

        os.kill(server.pid, signal.SIGCONT)
        await redis_decides_again(limiter)
        assert await limiter.health() == "ok"
        assert_exact(await burst([limiter], str(uuid.uuid4()), 1000, HUNDRED_PER_HOUR), 100)

        server.kill()  # dead: connections are refused
        server.wait(timeout=5)
        dead = [await timed_hits(limiter, "dead", 1, HUNDRED_PER_HOUR) for _ in range(5)]
        assert all(
            elapsed < NEVER_BLOCKS_S and d.is_fallback for batch in dead for elapsed, d in batch
        )


async def test_deny_policy_refuses_fast_when_nothing_listens(keyspace: RedisKeyspace) -> None:
    settings = Settings(
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        rate_limit_on_redis_error=RedisErrorPolicy.DENY,
    )
    async with limiter_on(settings, keyspace) as (limiter, log):
        timings = await timed_hits(limiter, "k", 20, HUNDRED_PER_HOUR)
    assert max(elapsed for elapsed, _ in timings) < NEVER_BLOCKS_S
    assert not any(d.allowed for _, d in timings)
    assert all(d.is_fallback and d.retry_after_s > 0 for _, d in timings)
    assert log == ["fallback"] * 20


async def usage_of(redis: aioredis.Redis, keyspace: RedisKeyspace, key_id: str) -> dict[int, int]:
    counts = await redis.hgetall(keyspace.usage(key_id))
    return {int(minute): int(count) for minute, count in counts.items()}


async def test_admissions_without_redis_reach_it_once_when_it_answers_again(
    own_redis: tuple[subprocess.Popen[bytes], str], keyspace: RedisKeyspace
) -> None:
    server, url = own_redis
    settings = Settings(redis_url=url, rate_limit_on_redis_error=RedisErrorPolicy.LOCAL)
    key_id = str(uuid.uuid4())
    client = aioredis.Redis.from_url(url)
    try:
        async with limiter_on(settings, keyspace) as (limiter, _):
            assert not (await limiter.hit(key_id, HUNDRED_PER_HOUR)).is_fallback
            os.kill(server.pid, signal.SIGSTOP)
            try:
                # The first hits' scripts are sent and wait in the paused Redis (which runs them
                # on resuming); the breaker then opens and the rest are counted in the process.
                paused = [await limiter.hit(key_id, HUNDRED_PER_HOUR) for _ in range(20)]
            finally:
                os.kill(server.pid, signal.SIGCONT)
            assert all(d.is_fallback and d.allowed for d in paused)
            await redis_decides_again(limiter)

            async def handed_over() -> bool:
                return sum((await usage_of(client, keyspace, key_id)).values()) >= 21

            await wait_until_async(
                handed_over, what="deferred usage handed over", timeout_s=RESUMES_WITHIN_S
            )
        # The limiter is closed: its batches and hand-overs are done, so nothing more can come.
        assert sum((await usage_of(client, keyspace, key_id)).values()) == 21
        assert key_id.encode() in await client.smembers(keyspace.dirty)
    finally:
        await client.aclose()


async def test_a_deferred_batch_whose_reply_is_lost_is_applied_once(
    settings: Settings, keyspace: RedisKeyspace, redis: aioredis.Redis
) -> None:
    now = [120.0]
    client = create_redis(settings)  # REDIS_TIMEOUT: a paused reply is a lost one
    deferred = DeferredUsage(client, keyspace, ttl_s=60, clock=lambda: now[0])
    try:
        deferred.add("warm-up")  # loads the script while Redis answers
        await deferred.hand_over()
        for _ in range(3):
            deferred.add("a")
        now[0] = 185.0
        deferred.add("a")
        deferred.add("b")
        await redis.client_pause(300, all=False)  # WRITE: the script waits, then runs
        with pytest.raises(RedisError):  # Redis holds the batch and runs it once the pause ends
            await deferred.hand_over()
        assert deferred.held() == 5
        # A write waits out the pause (the batch, queued first, has run by its reply).
        await redis.set(f"{keyspace.namespace}:pause-over", 1)
        await deferred.hand_over()  # the same batch again: already applied, so nothing changes
    finally:
        await client.aclose()
    assert deferred.is_empty
    assert await usage_of(redis, keyspace, "a") == {120: 3, 180: 1}
    assert await usage_of(redis, keyspace, "b") == {180: 1}
    assert {b"a", b"b"} <= await redis.smembers(keyspace.dirty)
