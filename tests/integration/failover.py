"""A Redis failover under load against a real `gatekey serve`, and what every shape must show
through it: the fallback answers, nobody waits long, usage is never doubled, exact limits return.
Shared by the Redis Cluster and Redis Sentinel tests."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from service.db import Database
from service.harness.processes import wait_until_async
from service.keys.service import IssuedKey
from service.redis.client import create_redis
from service.redis.keyspace import RedisKeyspace
from tests.factories import create_key, key_header
from tests.integration.redis_topologies import FAILOVER_WITHIN_S
from tests.integration.servers import (
    FLUSHED_WITHIN_S,
    Clients,
    Outcome,
    ServeProcess,
    assert_exact_burst,
    fire,
    fire_until,
    stored_usage,
)

logger = logging.getLogger(__name__)
WHOAMI = "/v1/whoami"
FALLBACK = "gatekey_ratelimit_decisions_total"
CONCURRENCY = 20
# The limiter gives up on a dead node after 2 x REDIS_TIMEOUT; the rest is the machine's own
# latency under load (2 cores shared with other test runs): a wait on a dead node's TCP
# timeouts, or on redis-py's retries, would take seconds.
SLOWEST_REQUEST_S = 2.0


@dataclass(frozen=True, slots=True)
class FailoverRun:
    outcomes: list[Outcome]
    keys: list[IssuedKey]
    failed_at: float  # time.monotonic()
    recovered_at: float
    fallbacks: float  # fallback decisions during the run, all workers

    def figures(self) -> str:
        """What the failover cost the clients, for the test log (`-o log_cli=true`)."""
        during = [o for o in self.outcomes if self.failed_at <= o.started_at < self.recovered_at]
        slow = sum(o.elapsed_s > 0.1 for o in self.outcomes)
        return (
            f"failover {self.recovered_at - self.failed_at:.1f} s; {len(self.outcomes)} requests"
            f" ({len(during)} during it), statuses {dict(Counter(o.status for o in self.outcomes))}"
            f", {self.fallbacks:.0f} fallback decisions, slowest"
            f" {max(o.elapsed_s for o in self.outcomes) * 1000:.0f} ms, {slow} over 100 ms"
        )

    def admitted(self) -> Counter[int]:
        """Per key index, the requests answered 200."""
        return Counter(o.index % len(self.keys) for o in self.outcomes if o.status == 200)


async def load_through_failover(
    server: ServeProcess,
    database: Database,
    fail: Callable[[], None],
    is_recovered: Callable[[], bool],
) -> FailoverRun:
    """`CONCURRENCY` clients over 30 keys (spread over every shard) until the deployment has
    recovered from `fail()` and 3 s more, for the workers' breakers to find the new master."""
    keys = [
        await create_key(database, server.settings, name=f"failover {i}", rate_limit="10000/second")
        for i in range(30)
    ]
    fallbacks_before = sum(server.counts_by_pid(FALLBACK, decision="fallback").values())
    stop = asyncio.Event()
    async with Clients(server.url, connections=CONCURRENCY) as clients:
        load = asyncio.create_task(
            fire_until(
                lambda i: clients[i].get(WHOAMI, headers=key_header(keys[i % 30].plaintext)),
                stop,
                concurrency=CONCURRENCY,
                bound_s=FAILOVER_WITHIN_S + 60,
            )
        )
        await asyncio.sleep(2)
        failed_at = time.monotonic()
        await asyncio.to_thread(fail)
        await wait_until_async(
            lambda: asyncio.to_thread(is_recovered),
            what="the failover",
            timeout_s=FAILOVER_WITHIN_S,
        )
        recovered_at = time.monotonic()
        await asyncio.sleep(3)
        stop.set()
        outcomes = await load
    fallbacks = sum(server.counts_by_pid(FALLBACK, decision="fallback").values())
    run = FailoverRun(outcomes, keys, failed_at, recovered_at, fallbacks - fallbacks_before)
    logger.info(run.figures())
    return run


def assert_answered_throughout(run: FailoverRun) -> None:
    """Every request answered 200 (the `local` fallback admits within its share of a generous
    limit), none slower than `SLOWEST_REQUEST_S`, and the fallback did decide some."""
    errors = [repr(o.error) for o in run.outcomes if o.error is not None]
    assert errors == [], errors[:5]
    assert Counter(o.status for o in run.outcomes) == {200: len(run.outcomes)}
    slowest = max(o.elapsed_s for o in run.outcomes)
    assert slowest < SLOWEST_REQUEST_S, slowest
    assert run.fallbacks > 0


async def assert_usage_never_doubled(
    server: ServeProcess, database: Database, run: FailoverRun
) -> tuple[int, int]:
    """Once every flush has settled: no key stored above what it was admitted, and the total
    short by at most two requests per client: the one in flight when the master died (Redis
    replicates asynchronously: what a killed master ran but had not passed on dies with it),
    and one sent on a connection the dead master had not yet reset (sent, so maybe run: the
    fallback does not count it, lest it count twice). Returns (admitted, stored)."""
    admitted = run.admitted()
    keyspace = RedisKeyspace(server.settings.redis_namespace)
    redis = create_redis(server.settings, timeout=2)
    deadline = time.monotonic() + FLUSHED_WITHIN_S
    try:
        previous: list[int] = []
        while True:
            stored = [await stored_usage(database, key.record.id) for key in run.keys]
            for index, count in enumerate(stored):
                assert count <= admitted[index], f"key {index}: {count} > {admitted[index]}"
            pending = await redis.scard(keyspace.dirty) + await redis.scard(keyspace.processing)
            if stored == previous and pending == 0:
                break
            assert time.monotonic() < deadline, (stored, pending)
            previous = stored
            await asyncio.sleep(1)
    finally:
        await redis.aclose()
    total_admitted, total_stored = sum(admitted.values()), sum(stored)
    logger.info("usage: %d admitted, %d stored", total_admitted, total_stored)
    assert total_admitted - 2 * CONCURRENCY <= total_stored <= total_admitted
    return total_admitted, total_stored


async def _wait_for_redis_decisions(server: ServeProcess, key: IssuedKey) -> None:
    """Until 40 requests on fresh connections (spread over the workers) meet no fallback."""
    headers = key_header(key.plaintext) | {"Connection": "close"}

    async def decided_by_redis() -> bool:
        before = server.counts_by_pid(FALLBACK, decision="fallback")
        async with Clients(server.url, connections=10) as clients:
            await fire(lambda i: clients[i].get(WHOAMI, headers=headers), 40, concurrency=10)
        return server.counts_by_pid(FALLBACK, decision="fallback") == before

    await wait_until_async(decided_by_redis, what="decisions by Redis", timeout_s=30)


async def assert_exact_again(server: ServeProcess, database: Database) -> None:
    """Once Redis decides again on both workers, a fresh 100/hour key admits exactly 100 of a
    burst of 1,000 over them."""
    probe = await create_key(database, server.settings, name="probe", rate_limit="10000/second")
    await _wait_for_redis_decisions(server, probe)
    issued = await create_key(database, server.settings, name="after", rate_limit="100/hour")
    before = server.counts_by_pid(FALLBACK, decision="fallback")
    async with Clients(server.url) as clients:
        outcomes = await fire(
            lambda i: clients[i].get(WHOAMI, headers=key_header(issued.plaintext)),
            1000,
            concurrency=100,
        )
    after = server.counts_by_pid(FALLBACK, decision="fallback")
    logger.info("exact burst: fallback decisions %s -> %s", before, after)
    assert_exact_burst(outcomes, 100, 3600)
