"""Real processes for the serve tests: `gatekey serve` and `redis-server` on free ports (through
the harness), and the bounded concurrent load the tests drive them with."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import ssl
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import text

from service.config import Settings
from service.db import Database
from service.harness.gatekey import cli_env, serve_command
from service.harness.processes import (
    ServerProcess,
    answers,
    free_port,
    port_accepts,
    redis_server_command,
    start_server,
    wait_until,
    wait_until_async,
)
from service.harness.processes import serving as serving_process
from service.metrics.multiprocess import ARCHIVE_NAME
from service.redis.client import create_redis
from service.redis.keyspace import RedisKeyspace, key_id_of
from service.redis.url import RedisShape, parse_redis_url
from service.selftest.prom import Scrape, parse_scrape
from tests.factories import assert_problem

RSS = "gatekey_worker_resident_memory_bytes"
logger = logging.getLogger(__name__)


def serve_settings(settings: Settings, **updates: object) -> Settings:
    """The test settings made fit for servers: small pools (PostgreSQL's 100 connections are
    shared with the whole suite), a short usage flush and a Redis namespace of their own."""
    return settings.model_copy(
        update={
            "database_pool_size": 5,
            "database_pool_max_overflow": 2,
            "usage_flush_interval": 0.5,
            "redis_namespace": f"gkserve-{uuid.uuid4().hex[:12]}",
            **updates,
        }
    )


@dataclass(frozen=True, slots=True)
class ServeProcess(ServerProcess):
    """One `gatekey serve` supervisor, with the settings it runs with and its metric files."""

    settings: Settings
    metrics_dir: Path

    def counts_by_pid(self, sample: str, **labels: str) -> dict[int, float]:
        """A counter's `sample` (e.g. `gatekey_http_requests_total`) per worker pid, dead workers
        included, read from each worker's own file (a scrape merges them and drops the pid)."""
        counts: dict[int, float] = {}
        for path in self.worker_counter_files():
            pid = int(path.stem.removeprefix("counter_"))
            for family in MultiProcessCollector.merge([str(path)]):  # type: ignore[no-untyped-call]
                counts[pid] = counts.get(pid, 0.0) + sum(
                    s.value
                    for s in family.samples
                    if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
                )
        return counts

    def worker_counter_files(self) -> list[Path]:
        """Each worker's own counter file; dead workers' counts live on in the archive file."""
        archive = self.metrics_dir / f"counter_{ARCHIVE_NAME}.db"
        return [path for path in self.metrics_dir.glob("counter_*.db") if path != archive]


def every_worker_reports(workers: int) -> Callable[[ServerProcess], bool]:
    """Readiness of a `gatekey serve --workers N`: `/readyz` answers 200, and each of its `workers`
    living workers reports in the metrics (a scrape then covers them all)."""

    def ready(server: ServerProcess) -> bool:
        try:
            reported = parse_scrape(httpx.get(f"{server.url}/metrics", timeout=2).text)
        except httpx.TransportError:
            return False
        pids = server.worker_pids()
        return (
            answers("/readyz")(server)
            and len(pids) == workers
            and {str(pid) for pid in pids} <= set(reported.by_label(RSS, "pid"))
        )

    return ready


def start_serve(settings: Settings, workdir: Path, *, workers: int) -> ServeProcess:
    """Start the supervisor in `workdir`, its metric files in `workdir/metrics`; the caller waits
    for it and stops it (see `serving`)."""
    metrics_dir = workdir / "metrics"
    metrics_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    started = start_server(
        serve_command(port, workers=workers),
        port=port,
        log=workdir / "serve.log",
        env=cli_env(settings, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir)),
        cwd=workdir,
    )
    return ServeProcess(started.process, port, started.log, settings, metrics_dir)


@contextlib.contextmanager
def serving(settings: Settings, workdir: Path, *, workers: int) -> Iterator[ServeProcess]:
    """A ready server for the block; stopped (by pid) and its Redis namespace emptied after."""
    server = start_serve(settings, workdir, workers=workers)
    ready = every_worker_reports(workers)
    try:
        wait_until(lambda: ready(server), what="gatekey serve", server=server)
        yield server
    finally:
        server.stop()
        forget_namespace(settings.redis_url, settings.redis_namespace)
        # Shown by pytest when the block's last test fails (the file stays in pytest's tmp).
        logger.warning("gatekey serve log:\n%s", server.log.read_text(errors="replace"))


async def replacement_of(server: ServerProcess, old: set[int], victim: int) -> set[int]:
    """The living workers once another has taken the killed `victim`'s place among `old`."""
    living: list[set[int]] = []

    def replaced() -> bool:
        living.append(server.worker_pids())
        return victim not in living[-1] and len(living[-1]) == len(old)

    await wait_until_async(replaced, what="a replacement worker", server=server)
    return living[-1]


def forget_namespace(redis_url: str, namespace: str) -> None:
    """Delete the namespace's keys from one Redis server (a Cluster or Sentinel deployment of a
    test's own goes with the test)."""
    if parse_redis_url(redis_url).shape is not RedisShape.SINGLE:
        return
    with contextlib.suppress(redis.RedisError):
        client = redis.Redis.from_url(redis_url, socket_timeout=2)
        try:
            keys = list(client.scan_iter(f"{namespace}:*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


@dataclass(frozen=True, slots=True)
class RedisServer:
    process: subprocess.Popen[bytes]
    url: str

    @property
    def pid(self) -> int:
        return self.process.pid


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    """A `redis-server` of the test's own on a free port, stopped by pid afterwards."""
    port = free_port()
    with serving_process(
        redis_server_command(port, workdir),
        port=port,
        log=workdir / "redis.log",
        ready=lambda server: port_accepts(server.port),
    ) as server:
        try:
            yield RedisServer(server.process, f"redis://127.0.0.1:{port}/0")
        finally:
            if server.process.poll() is None:
                os.kill(server.pid, signal.SIGCONT)  # a test may have left it stopped


@dataclass(frozen=True, slots=True)
class Outcome:
    """One request: its response, or the transport error that replaced it."""

    index: int  # the request's number: with `fire`, loop `index % concurrency` sent it
    started_at: float  # time.monotonic()
    elapsed_s: float
    response: httpx.Response | None
    error: httpx.TransportError | None

    @property
    def status(self) -> int | None:
        return self.response.status_code if self.response is not None else None


Send = Callable[[int], Awaitable[httpx.Response]]


async def _timed(send: Send, index: int) -> Outcome:
    started = time.monotonic()
    try:
        response = await send(index)
    except httpx.TransportError as error:
        return Outcome(index, started, time.monotonic() - started, None, error)
    return Outcome(index, started, time.monotonic() - started, response, None)


async def fire(send: Send, count: int, *, concurrency: int, bound_s: float = 60) -> list[Outcome]:
    """`count` requests from `concurrency` loops; loop `k` sends requests `k`, `k + concurrency`,
    ... one after another, so with `concurrency` clients, `clients[index]` is the loop's own.
    Outcomes in request order."""
    outcomes: list[Outcome | None] = [None] * count

    async def loop(first: int) -> None:
        for index in range(first, count, concurrency):
            outcomes[index] = await _timed(send, index)

    async with asyncio.timeout(bound_s):
        await asyncio.gather(*(loop(k) for k in range(concurrency)))
    return [outcome for outcome in outcomes if outcome is not None]


async def fire_until(
    send: Send, stop: asyncio.Event, *, concurrency: int, bound_s: float = 60
) -> list[Outcome]:
    """As `fire`, but each loop goes on until `stop` is set; outcomes in order of sending."""

    async def loop(first: int) -> list[Outcome]:
        outcomes = []
        index = first
        while not stop.is_set():
            outcomes.append(await _timed(send, index))
            index += concurrency
        return outcomes

    async with asyncio.timeout(bound_s):
        runs = await asyncio.gather(*(loop(k) for k in range(concurrency)))
    return sorted((o for run in runs for o in run), key=lambda o: o.started_at)


class Clients:
    """`connections` httpx clients of one connection each, to `url`.

    One connection per client because httpx's pool, shared by concurrent requests, can leave a
    request waiting for a connection for a second or two while others are free (measured here:
    stalls of 0.5-2 s before the request is even sent), which a latency bound cannot tell from
    a slow server. `clients[i]` is the client for request `i`; `async with` closes them all.
    """

    def __init__(self, url: str, *, connections: int = 100) -> None:
        # Plain HTTP: the context is never used, but building one per client costs ~30 ms.
        tls = ssl.create_default_context()
        self._clients = [
            httpx.AsyncClient(
                base_url=url, timeout=10, verify=tls, limits=httpx.Limits(max_connections=1)
            )
            for _ in range(connections)
        ]

    def __getitem__(self, index: int) -> httpx.AsyncClient:
        return self._clients[index % len(self._clients)]

    async def __aenter__(self) -> Clients:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.gather(*(client.aclose() for client in self._clients))


async def scrape(client: httpx.AsyncClient) -> Scrape:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    return parse_scrape(response.text)


def assert_exact_burst(outcomes: list[Outcome], limit: int, window_s: int) -> None:
    """Exactly `limit` admitted, each seeing a different remaining count; every other request a
    complete 429 problem with `Retry-After` (at most one emission interval away)."""
    # A plain module: pytest does not rewrite these asserts, so they say what they saw.
    errors = [repr(o.error) for o in outcomes if o.error is not None]
    assert errors == [], errors[:5]
    statuses = Counter(o.status for o in outcomes)
    assert statuses == {200: limit, 429: len(outcomes) - limit}, statuses
    admitted = [o.response for o in outcomes if o.response is not None and o.status == 200]
    remaining = sorted(int(r.headers["RateLimit-Remaining"]) for r in admitted)
    assert remaining == list(range(limit)), remaining
    for outcome in outcomes:
        if outcome.response is not None and outcome.status == 429:
            assert_problem(outcome.response, 429, "RATE_LIMITED")
            headers = outcome.response.headers
            assert 1 <= int(headers["Retry-After"]) <= -(-window_s // limit), headers
            assert headers["RateLimit-Remaining"] == "0", headers


# Flushes happen every 0.5 s (serve_settings): a deadline for a wait that normally ends in one.
FLUSHED_WITHIN_S = 30.0


async def wait_for_usage(
    server: ServeProcess, database: Database, key_id: uuid.UUID, expected: int
) -> None:
    """Until the table holds `expected` for the key, then until no flush has the key still to
    write (neither dirty nor claimed): the count is final, not merely not grown yet."""
    keyspace = RedisKeyspace(server.settings.redis_namespace)
    redis = create_redis(server.settings, timeout=2)
    deadline = time.monotonic() + FLUSHED_WITHIN_S
    try:
        for _ in itertools.count():
            stored = await stored_usage(database, key_id)
            assert stored <= expected, f"stored {stored} > {expected}: counted twice"
            # A key with an owner is named `<id>/<owner>` there (`usage_ref`).
            pending = [
                any(key_id_of(_text(m)) == str(key_id) for m in await redis.smembers(name))
                for name in (keyspace.dirty, keyspace.processing)
            ]
            if stored == expected and not any(pending):
                break
            assert time.monotonic() < deadline, f"stored {stored}, expected {expected}"
            await asyncio.sleep(0.1)
    finally:
        await redis.aclose()
    assert await stored_usage(database, key_id) == expected


async def stored_usage(database: Database, key_id: uuid.UUID) -> int:
    """The key's admitted requests as flushed to PostgreSQL."""
    async with database.get_session() as session:
        total = await session.scalar(
            text("SELECT coalesce(sum(count), 0) FROM api_key_usage WHERE key_id = :id"),
            {"id": key_id},
        )
    return int(total or 0)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
