"""Counting against real `gatekey serve` workers: request metrics exact across processes and
across a worker SIGKILLed under load, usage flushed exactly to PostgreSQL even when a worker is
SIGKILLed before the flush."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager

import httpx
import pytest
import redis.asyncio as aioredis

from service.config import Settings
from service.db import Database
from service.harness.processes import wait_until_async
from service.redis.keyspace import RedisKeyspace
from tests.factories import create_key, key_header, unknown_key
from tests.integration.servers import (
    FLUSHED_WITHIN_S,
    Clients,
    ServeProcess,
    fire,
    fire_until,
    replacement_of,
    scrape,
    stored_usage,
    wait_for_usage,
)

WHOAMI = "/v1/whoami"
USAGE = "/v1/usage"
REQUESTS = "gatekey_http_requests_total"
VERIFICATIONS = "gatekey_key_verifications_total"
GENEROUS = "10000/second"


async def test_request_counter_grows_by_exactly_the_requests_served(
    server: ServeProcess, database: Database, settings: Settings
) -> None:
    issued = await create_key(database, server.settings, name="counted", rate_limit=GENEROUS)
    stranger = unknown_key(settings)
    # (method, path, key, status answered, route label counted)
    kinds = [
        ("GET", WHOAMI, issued.plaintext, 200, WHOAMI),
        ("GET", WHOAMI, stranger, 401, WHOAMI),
        ("GET", "/v1/nowhere", issued.plaintext, 404, "unmatched"),
        ("POST", "/v1/keys/verify", issued.plaintext, 200, "/v1/keys/verify"),
    ]
    async with Clients(server.url, connections=40) as clients:

        def send(i: int) -> Awaitable[httpx.Response]:
            method, path, key, _, _ = kinds[i % len(kinds)]
            body = {"key": key} if method == "POST" else None
            return clients[i].request(method, path, headers=key_header(key), json=body)

        before = await scrape(clients[0])
        again = await scrape(clients[1])  # a scrape is not a request served
        outcomes = await fire(send, 400, concurrency=40)
        after = await scrape(clients[2])
    assert [o.status for o in outcomes] == [kinds[i % 4][3] for i in range(400)]
    assert again.total(REQUESTS) == before.total(REQUESTS)
    assert after.total(REQUESTS) - before.total(REQUESTS) == 400
    for method, _, _, status, route in kinds:
        labels = {"method": method, "route": route, "status": str(status)}
        assert after.total(REQUESTS, **labels) - before.total(REQUESTS, **labels) == 100


@asynccontextmanager
async def flush_held(redis: aioredis.Redis, namespace: str) -> AsyncIterator[None]:
    """Hold the flusher's lock, so no worker flushes inside the block (bounded wait for it)."""
    lock, token = RedisKeyspace(namespace).flush_lock, secrets.token_hex(8)

    async def taken() -> bool:
        # Long enough for any block here, however slow the host; deleted at its end.
        return bool(await redis.set(lock, token, nx=True, px=600_000))

    await wait_until_async(taken, what="the flusher's lock", timeout_s=FLUSHED_WITHIN_S)
    try:
        yield
    finally:
        if await redis.get(lock) == token.encode():
            await redis.delete(lock)


async def test_usage_counts_every_admitted_request_exactly_once(
    server: ServeProcess, database: Database, redis: aioredis.Redis
) -> None:
    issued = await create_key(database, server.settings, name="usage", rate_limit=GENEROUS)
    headers = key_header(issued.plaintext)
    async with Clients(server.url, connections=20) as clients:
        outcomes = await fire(
            lambda i: clients[i].get(WHOAMI, headers=headers), 300, concurrency=20
        )
    assert Counter(o.status for o in outcomes) == {200: 300}
    await wait_for_usage(server, database, issued.record.id, 300)
    for calls in (1, 2):  # each usage call counts too, once flushed
        # A new connection each time: an idle one may meet uvicorn's keep-alive limit on reuse.
        async with (
            flush_held(redis, server.settings.redis_namespace),
            Clients(server.url, connections=1) as fresh,
        ):
            usage = (await fresh[0].get(USAGE, headers=headers)).json()
        shown = 300 + calls - 1
        assert (usage["total"], sum(m["count"] for m in usage["minutes"])) == (shown, shown)
        await wait_for_usage(server, database, issued.record.id, 300 + calls)


@pytest.mark.slow
async def test_usage_stays_exact_when_a_worker_is_killed_before_the_flush(
    server: ServeProcess, database: Database, redis: aioredis.Redis
) -> None:
    issued = await create_key(database, server.settings, name="killed", rate_limit=GENEROUS)
    headers = key_header(issued.plaintext)
    before = server.counts_by_pid(REQUESTS, route=WHOAMI)
    async with flush_held(redis, server.settings.redis_namespace):
        async with Clients(server.url, connections=20) as clients:
            outcomes = await fire(
                lambda i: clients[i].get(WHOAMI, headers=headers), 300, concurrency=20
            )
        assert Counter(o.status for o in outcomes) == {200: 300}
        served = server.counts_by_pid(REQUESTS, route=WHOAMI)
        old = server.worker_pids()
        victim = max(old, key=lambda pid: served[pid] - before.get(pid, 0))
        assert served[victim] - before.get(victim, 0) > 0
        os.kill(victim, signal.SIGKILL)
        await replacement_of(server, old, victim)
        assert await stored_usage(database, issued.record.id) == 0
    await wait_for_usage(server, database, issued.record.id, 300)


async def served_by_every_worker(
    server: ServeProcess, before: dict[int, float], at_least: int
) -> None:
    """Until each living worker has served `at_least` more requests to /v1/whoami (bounded)."""

    def served() -> bool:
        now = server.counts_by_pid(REQUESTS, route=WHOAMI)
        return all(now.get(pid, 0) - before.get(pid, 0) >= at_least for pid in server.worker_pids())

    await wait_until_async(served, what=f"{at_least} requests on every worker", server=server)


@pytest.mark.slow
async def test_request_totals_stay_exact_when_a_worker_is_killed_under_load(
    server: ServeProcess, database: Database
) -> None:
    issued = await create_key(database, server.settings, name="totals", rate_limit=GENEROUS)
    # A new connection per request, so that the replacement gets its share of the load.
    headers = key_header(issued.plaintext) | {"Connection": "close"}
    stop = asyncio.Event()
    async with Clients(server.url, connections=20) as clients:
        before = await scrape(clients[0])
        per_worker = server.counts_by_pid(REQUESTS, route=WHOAMI)
        load = asyncio.create_task(
            fire_until(lambda i: clients[i].get(WHOAMI, headers=headers), stop, concurrency=20)
        )
        # The victim has served far more requests than could be in flight when it dies (20),
        # so losing its counts, or counting them twice, moves the totals by more than that.
        await served_by_every_worker(server, per_worker, at_least=200)
        old = server.worker_pids()
        victim = min(old)
        os.kill(victim, signal.SIGKILL)
        replaced = await replacement_of(server, old, victim)
        await served_by_every_worker(server, server.counts_by_pid(REQUESTS, route=WHOAMI), 50)
        stop.set()
        outcomes = await load
    async with Clients(server.url, connections=1) as fresh:
        after = await scrape(fresh[0])
    statuses = Counter(o.status for o in outcomes if o.response is not None)
    assert set(statuses) == {200}, statuses
    answered, lost = statuses[200], sum(o.error is not None for o in outcomes)
    assert lost <= 20  # at most the requests in flight on the victim, one per connection

    def grown(sample: str, **labels: str) -> float:
        return after.total(sample, **labels) - before.total(sample, **labels)

    # Every answered request is in the totals once, the victim's included. A lost request is
    # counted only if the kill fell between its being counted and its answer leaving.
    assert answered <= grown(REQUESTS, route=WHOAMI, status="200") <= answered + lost
    assert answered <= grown(VERIFICATIONS, result="VALID") <= answered + lost
    assert victim not in replaced
    assert f"counter_{victim}.db" not in {path.name for path in server.worker_counter_files()}
