"""`gatekey serve` when things break: Redis paused or its scripts flushed, a worker SIGKILLed, the
supervisor SIGTERMed, all under load."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import redis.asyncio as aioredis
from sqlalchemy import make_url, text

from service.config import Settings
from service.db import Database
from service.harness.processes import wait_until_async
from service.redis.keyspace import RedisKeyspace
from service.selftest.prom import Scrape
from service.workers.supervisor import GRACEFUL_SHUTDOWN_S
from tests.factories import create_key, flush_scripts_until, key_header
from tests.integration.servers import (
    Clients,
    Outcome,
    RedisServer,
    ServeProcess,
    assert_exact_burst,
    fire,
    fire_until,
    redis_server,
    replacement_of,
    scrape,
    serve_settings,
    serving,
    stored_usage,
    wait_for_usage,
)

WHOAMI = "/v1/whoami"
USAGE = "/v1/usage"
HOUR = 3600
DECISIONS = "gatekey_ratelimit_decisions_total"
DURATIONS = "gatekey_http_request_duration_seconds"
GENEROUS = "10000/second"
WHOAMI_FIELDS = {
    "id",
    "name",
    "display_prefix",
    "owner",
    "scopes",
    "rate_limits",
    "owner_rate_limits",
    "expires_at",
    "metadata",
}
USAGE_FIELDS = {"key_id", "total", "minutes"}
OK = {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}
PROBES = 4
DEGRADED = {"status": "degraded", "checks": {"database": "ok", "redis": "degraded"}}
PAUSE_S = 5.0
# A request that waited for the paused Redis would take up to the whole pause; one answered by
# the fallback takes milliseconds, and scheduling noise on a loaded host stays far below this.
WAITED_FOR_REDIS_S = "2.5"  # a bucket of the request duration histogram, half the pause
STOP_USERS = 100
BACKENDS_CLOSED_S = 5.0  # after the supervisor exits


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis")) as running:
        yield running


@pytest.fixture(scope="module")
def serve_overrides(own_redis: RedisServer) -> dict[str, object]:
    """The module's `server` on a Redis of this module's own, which the tests pause and flush."""
    return {"redis_url": own_redis.url}


@pytest.fixture
async def own_client(own_redis: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(own_redis.url, socket_timeout=2)
    yield client
    await client.aclose()


def fallbacks(scraped: Scrape) -> float:
    return scraped.total(DECISIONS, decision="fallback")


def slower_than(before: Scrape, after: Scrape, route: str, bucket: str) -> float:
    """Requests to `route` between two scrapes that took longer than the histogram `bucket`."""

    def over(scraped: Scrape) -> float:
        count = scraped.total(f"{DURATIONS}_count", route=route)
        return count - scraped.total(f"{DURATIONS}_bucket", route=route, le=bucket)

    return over(after) - over(before)


def failures(outcomes: list[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if o.status != 200]


async def test_script_flush_under_load_keeps_the_limit_exact(
    server: ServeProcess, own_client: aioredis.Redis, database: Database
) -> None:
    issued = await create_key(database, server.settings, name="flushed", rate_limit="100/hour")
    stop = asyncio.Event()
    async with Clients(server.url) as clients:
        before = await scrape(clients[0])
        flusher = asyncio.create_task(flush_scripts_until(own_client, stop, pause_s=0.02))
        outcomes = await fire(
            lambda i: clients[i].get(WHOAMI, headers=key_header(issued.plaintext)),
            1000,
            concurrency=100,
        )
        stop.set()
        flushes = await flusher
        after = await scrape(clients[0])
    assert flushes >= 5
    assert_exact_burst(outcomes, 100, HOUR)
    assert fallbacks(after) == fallbacks(before)


Readiness = tuple[float, float, int, dict[str, Any]]  # sent, answered, status, body


async def readyz_while(clients: Clients, until: float) -> list[Readiness]:
    """`/readyz` every 0.1 s until `until` (monotonic)."""
    answers: list[Readiness] = []
    while time.monotonic() < until:
        sent = time.monotonic()
        response = await clients[len(answers)].get("/readyz")
        answers.append((sent, time.monotonic(), response.status_code, response.json()))
        await asyncio.sleep(0.1)
    return answers


@pytest.mark.slow
async def test_a_paused_redis_degrades_without_errors_then_limiting_resumes(
    server: ServeProcess, own_redis: RedisServer, database: Database
) -> None:
    generous = await create_key(database, server.settings, name="paused", rate_limit=GENEROUS)
    fresh = await create_key(database, server.settings, name="resumed", rate_limit="20/hour")
    stop = asyncio.Event()
    # Probes reuse few connections: one idle for uvicorn's 5 s keep-alive may be closed by the
    # server just as it is reused, a race of HTTP keep-alive rather than of gatekey.
    async with (
        Clients(server.url, connections=10) as clients,
        Clients(server.url, connections=PROBES) as probes,
    ):
        before = await scrape(probes[0])
        load = asyncio.create_task(
            fire_until(
                lambda i: clients[i].get(WHOAMI, headers=key_header(generous.plaintext)),
                stop,
                concurrency=10,
            )
        )
        await asyncio.sleep(1.0)
        fell_back_before, _ = decisions(server)
        os.kill(own_redis.pid, signal.SIGSTOP)
        paused_at = time.monotonic()
        try:
            readiness = await readyz_while(probes, paused_at + PAUSE_S)
            at_resume = decisions(server)
        finally:
            os.kill(own_redis.pid, signal.SIGCONT)
        resumed_at = time.monotonic()
        paused = await scrape(probes[0])
        await wait_until_async(
            lambda: limiting_resumed(server, fell_back_before, at_resume),
            what="limiting by Redis on every worker",
        )
        # New probes: the others may have idled past uvicorn's keep-alive meanwhile.
        async with Clients(server.url, connections=PROBES) as later:
            settled = await scrape(later[0])
            recovered = [(await later[i].get("/readyz")).json() for i in range(PROBES)]
            async with Clients(server.url) as bursting:
                burst = await fire(
                    lambda i: bursting[i].get(WHOAMI, headers=key_header(fresh.plaintext)),
                    100,
                    concurrency=100,
                )
            stop.set()
            outcomes = await load
            after = await scrape(later[0])
    assert failures(outcomes) == []
    # (seconds after the pause it was sent, seconds it took) of each request that waited
    waited = float(WAITED_FOR_REDIS_S)
    slow = [(o.started_at - paused_at, o.elapsed_s) for o in outcomes if o.elapsed_s >= waited]
    assert slow == []
    assert slower_than(before, after, WHOAMI, WAITED_FOR_REDIS_S) == 0  # as the workers saw it
    assert fallbacks(paused) > fallbacks(before)
    # Still ready (the fallback serves), and degraded on every worker, whether or not the load
    # had already shown it the paused Redis.
    while_paused = [
        (s, b) for sent, done, s, b in readiness if sent >= paused_at + 0.5 and done <= resumed_at
    ]
    assert len(while_paused) >= PROBES
    assert {status for status, _ in while_paused} == {200}
    assert [body for _, body in while_paused] == [DEGRADED] * len(while_paused)
    assert recovered == [OK] * PROBES
    assert_exact_burst(burst, 20, HOUR)
    assert fallbacks(after) == fallbacks(settled)
    # Every admitted request is in the usage table once: those counted by Redis, those the
    # fallback admitted and handed to Redis on its return, and those Redis ran on resuming.
    await wait_for_usage(server, database, generous.record.id, len(outcomes))


Counts = dict[int, float]  # per worker pid


def decisions(server: ServeProcess) -> tuple[Counts, Counts]:
    """Per worker: (requests the fallback decided, requests Redis admitted)."""
    return (
        server.counts_by_pid(DECISIONS, decision="fallback"),
        server.counts_by_pid(DECISIONS, decision="allowed"),
    )


def limiting_resumed(server: ServeProcess, before: Counts, paused: tuple[Counts, Counts]) -> bool:
    """Every worker decides by Redis again: each that fell back during the pause (its breaker
    opened) has had a decision from Redis since (its breaker closed)."""
    fell_back, decided = decisions(server)
    return all(
        decided.get(pid, 0.0) > paused[1].get(pid, 0.0)
        for pid in server.worker_pids()
        if fell_back.get(pid, 0.0) > before.get(pid, 0.0)
    )


@pytest.mark.slow
async def test_a_killed_worker_is_replaced_and_no_request_fails_with_an_error_status(
    server: ServeProcess, database: Database
) -> None:
    issued = await create_key(database, server.settings, name="worker killed", rate_limit=GENEROUS)
    old = server.worker_pids()
    victim = min(old)
    stop = asyncio.Event()
    async with (
        Clients(server.url, connections=20) as clients,
        Clients(server.url, connections=1) as probe,
    ):
        load = asyncio.create_task(
            fire_until(
                lambda i: clients[i].get(WHOAMI, headers=key_header(issued.plaintext)),
                stop,
                concurrency=20,
            )
        )
        await asyncio.sleep(0.5)
        os.kill(victim, signal.SIGKILL)
        replaced = await replacement_of(server, old, victim)
        ready = await probe[0].get("/readyz")
        await asyncio.sleep(1.0)
        stop.set()
        outcomes = await load
    assert victim not in replaced
    assert len(replaced) == len(old)
    assert ready.status_code == 200
    # The victim's counts were folded into the archive: no file per dead worker piles up (the
    # replacement's own file appears once it has imported, which a loaded host may delay).
    files = {path.name for path in server.worker_counter_files()}
    assert f"counter_{victim}.db" not in files
    assert files <= {f"counter_{pid}.db" for pid in replaced}
    assert {o.status for o in outcomes} <= {200, None}
    # Only requests on the killed worker's connections are lost, at most one per connection:
    # the next request of the same loop opens a new connection, which a living worker accepts.
    lost_by_loop = Counter(o.index % 20 for o in outcomes if o.error is not None)
    assert set(lost_by_loop.values()) <= {1}, lost_by_loop


@pytest.fixture
def stoppable(settings: Settings, tmp_path: Path) -> Iterator[ServeProcess]:
    with serving(serve_settings(settings), tmp_path, workers=2) as running:
        yield running


def database_client_ports(pids: set[int], database_port: int) -> set[int]:
    """The local ports of the connections `pids` hold to PostgreSQL: how pg_stat_activity tells
    their backends from those of other servers on the same database (same application_name)."""
    ports = set()
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            for connection in psutil.Process(pid).net_connections(kind="tcp"):
                if connection.raddr and connection.raddr.port == database_port:
                    ports.add(connection.laddr.port)
    return ports


async def backends_left(database: Database, settings: Settings, client_ports: set[int]) -> int:
    """Backends on the test database still serving one of `client_ports`."""
    async with database.engine.connect() as connection:
        left = await connection.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = :name AND client_port = ANY(:ports)"
            ),
            {"name": make_url(settings.database_url).database, "ports": sorted(client_ports)},
        )
    return int(left or 0)


async def is_refused(port: int) -> bool:
    """True when a new connection is refused, or reset: queued as the listening socket closed."""
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except (ConnectionRefusedError, ConnectionResetError):
        return True
    writer.close()
    await writer.wait_closed()
    return False


@pytest.mark.slow
async def test_sigterm_under_load_answers_every_admitted_request_then_exits_zero(
    stoppable: ServeProcess, database: Database, redis: aioredis.Redis
) -> None:
    issued = await create_key(database, stoppable.settings, name="stopped", rate_limit=GENEROUS)
    port = int(stoppable.url.rsplit(":", 1)[1])
    headers = key_header(issued.plaintext)
    stop = asyncio.Event()
    probes: list[tuple[float, bool]] = []
    answered_so_far = Counter[str]()
    async with Clients(stoppable.url, connections=STOP_USERS) as clients:

        async def send(i: int) -> httpx.Response:
            response = await clients[i].get(USAGE if i % 2 else WHOAMI, headers=headers)
            answered_so_far["answered"] += 1
            return response

        load = asyncio.create_task(fire_until(send, stop, concurrency=STOP_USERS))
        # Under load: every user has been answered at least once (on average) before the signal.
        await wait_until_async(
            lambda: answered_so_far["answered"] >= STOP_USERS, what="the load to start"
        )
        database_port = make_url(stoppable.settings.database_url).port or 5432
        client_ports = database_client_ports(stoppable.worker_pids(), database_port)
        stoppable.process.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        while stoppable.process.poll() is None:
            assert time.monotonic() - stopped_at < GRACEFUL_SHUTDOWN_S + 30, "it hangs"
            probes.append((time.monotonic(), await is_refused(port)))
            await asyncio.sleep(0.05)
        exited_after = time.monotonic() - stopped_at
        probes.append((time.monotonic(), await is_refused(port)))
        stop.set()
        outcomes = await load
    assert (stoppable.process.returncode, exited_after < GRACEFUL_SHUTDOWN_S) == (0, True)
    # A request the workers had not read when they closed an idle kept-alive connection is
    # closed unanswered (at most one per connection, and never processed: the admitted count
    # below equals the answered one); none is reset part-way through a response.
    cut_off = [o for o in outcomes if o.error is not None]
    closed = {"RemoteProtocolError", "ReadError", "ConnectError"}
    assert {type(o.error).__name__ for o in cut_off} <= closed
    before_signal = Counter(o.index % STOP_USERS for o in cut_off if o.started_at < stopped_at)
    assert set(before_signal.values()) <= {1}, before_signal
    # The workers closed their pools on the way out: none of their backends outlives them.
    assert client_ports  # under load, the workers held connections

    async def all_closed() -> bool:
        return await backends_left(database, stoppable.settings, client_ports) == 0

    await wait_until_async(
        all_closed,
        what="the service's backends to close",
        timeout_s=BACKENDS_CLOSED_S,
    )
    answered = [o for o in outcomes if o.response is not None]
    assert {o.status for o in answered} == {200}
    for outcome in answered:  # complete bodies: each parses and holds its fields
        assert outcome.response is not None
        path = outcome.response.request.url.path
        assert set(outcome.response.json()) == (WHOAMI_FIELDS if path == WHOAMI else USAGE_FIELDS)
    # Every request the limiter admitted (counted in Redis) got its whole response...
    usage_key = RedisKeyspace(stoppable.settings.redis_namespace).usage(str(issued.record.id))
    admitted = sum(int(n) for n in (await redis.hgetall(usage_key)).values())
    assert admitted == len(answered)
    # ...and the last flush, at shutdown, stored every one of them.
    assert await stored_usage(database, issued.record.id) == len(answered)
    # New connections are refused from the moment the listening socket closes (at the latest
    # when the supervisor exits, within the graceful period), and from then on.
    refused_at = [at for at, refused in probes if refused]
    assert refused_at
    assert all(refused for at, refused in probes if at >= refused_at[0])
