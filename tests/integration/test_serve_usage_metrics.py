"""Counting against real `gatekey serve` workers: request metrics exact across processes, usage
flushed exactly to PostgreSQL, even when a worker is SIGKILLed before the flush."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager

import httpx
import pytest
import redis.asyncio as aioredis

from service.config import Settings
from service.db import Database
from service.redis.keyspace import RedisKeyspace
from tests.factories import create_key, unknown_key
from tests.integration.servers import (
    FLUSHED_WITHIN_S,
    Clients,
    ServeProcess,
    fire,
    key_header,
    scrape,
    serve_settings,
    serving,
    stored_usage,
    wait_for_usage,
)

WHOAMI = "/v1/whoami"
USAGE = "/v1/usage"
REQUESTS = "gatekey_http_requests_total"
GENEROUS = "10000/second"


@pytest.fixture(scope="module")
def server(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    workdir = tmp_path_factory.mktemp("usage")
    with serving(serve_settings(settings), workdir, workers=2) as running:
        yield running


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
    deadline = time.monotonic() + FLUSHED_WITHIN_S
    while not await redis.set(lock, token, nx=True, px=30_000):
        assert time.monotonic() < deadline, "a flusher held its lock for seconds"
        await asyncio.sleep(0.02)
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
    await wait_for_usage(database, issued.record.id, 300)
    for calls in (1, 2):  # each usage call counts too, once flushed
        # A new connection each time: an idle one may meet uvicorn's keep-alive limit on reuse.
        async with (
            flush_held(redis, server.settings.redis_namespace),
            Clients(server.url, connections=1) as fresh,
        ):
            usage = (await fresh[0].get(USAGE, headers=headers)).json()
        shown = 300 + calls - 1
        assert (usage["total"], sum(m["count"] for m in usage["minutes"])) == (shown, shown)
        await wait_for_usage(database, issued.record.id, 300 + calls)


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
        victim = max(server.worker_pids(), key=lambda pid: served[pid] - before.get(pid, 0))
        assert served[victim] - before.get(victim, 0) > 0
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        while victim in server.worker_pids():
            assert time.monotonic() - killed_at < FLUSHED_WITHIN_S, "the killed worker lingers"
            await asyncio.sleep(0.05)
        assert await stored_usage(database, issued.record.id) == 0
    await wait_for_usage(database, issued.record.id, 300)
