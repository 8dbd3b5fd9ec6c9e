"""Metrics across real worker processes: two uvicorn workers, one of them SIGKILLed mid-way.

uvicorn imports this module in each worker (`create_test_app` is its factory), so importing it
must stay free of side effects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from service.harness.processes import ServerProcess, free_port, serving, wait_until_async
from service.metrics import (
    RequestMetricsMiddleware,
    create_metrics,
    mark_worker_dead,
    metrics_endpoint,
    prepare_multiprocess_dir,
    run_resource_sampler,
)
from service.metrics.multiprocess import ARCHIVE_NAME, MULTIPROC_DIR_ENV

REPO = Path(__file__).resolve().parents[2]
REQUESTS = 500
RSS = "gatekey_worker_resident_memory_bytes"


def create_test_app() -> FastAPI:
    """uvicorn factory run in every worker: the middleware, /metrics and the resource sampler."""
    metrics = create_metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        sampler = asyncio.create_task(run_resource_sampler(metrics, interval=0.2))
        yield
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler

    app = FastAPI(lifespan=lifespan)

    @app.get("/items/{item_id}")
    async def get_item(item_id: int) -> dict[str, int]:
        return {"id": item_id, "pid": os.getpid()}

    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)
    app.add_route("/metrics", metrics_endpoint(metrics), methods=["GET"], include_in_schema=False)
    return app


@dataclass(frozen=True)
class Server:
    url: str
    metrics_dir: Path


@dataclass(frozen=True)
class Scrape:
    requests_total: float
    worker_pids: frozenset[int]


def parse(exposition: str) -> Scrape:
    samples = [s for f in text_string_to_metric_families(exposition) for s in f.samples]
    return Scrape(
        requests_total=sum(s.value for s in samples if s.name == "gatekey_http_requests_total"),
        worker_pids=frozenset(int(s.labels["pid"]) for s in samples if s.name == RSS),
    )


def two_workers_report(server: ServerProcess) -> bool:
    try:
        return len(parse(httpx.get(f"{server.url}/metrics", timeout=2).text).worker_pids) == 2
    except httpx.TransportError:
        return False


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    monkeypatch.setenv(MULTIPROC_DIR_ENV, "")  # restored after the test
    metrics_dir = prepare_multiprocess_dir(tmp_path / "metrics")
    port = free_port()
    command = [
        *(sys.executable, "-m", "uvicorn", f"{__name__}:create_test_app", "--factory"),
        *("--workers", "2", "--host", "127.0.0.1", "--port", str(port), "--log-level", "info"),
    ]
    log = tmp_path / "uvicorn.log"
    try:
        with serving(command, port=port, log=log, cwd=REPO, ready=two_workers_report) as running:
            yield Server(running.url, metrics_dir)
    finally:
        # Shown by pytest only when the test fails: worker starts, deaths and replacements.
        logging.getLogger(__name__).warning("uvicorn log:\n%s", log.read_text())


async def scrape(client: httpx.AsyncClient) -> Scrape:
    response = await client.get("/metrics")
    response.raise_for_status()
    return parse(response.text)


async def send_requests(client: httpx.AsyncClient, count: int) -> set[int]:
    """`count` concurrent requests, all answered 200; the pids of the workers that served them."""
    responses = await asyncio.gather(*(client.get(f"/items/{i}") for i in range(count)))
    assert [r.status_code for r in responses] == [200] * count
    return {r.json()["pid"] for r in responses}


async def replacement_up(client: httpx.AsyncClient, dead_pid: int) -> Scrape:
    """The first scrape with two workers besides the dead one."""
    scrapes = [await scrape(client)]

    async def replaced() -> bool:
        scrapes.append(await scrape(client))
        return len(scrapes[-1].worker_pids - {dead_pid}) >= 2

    await wait_until_async(replaced, what="a replacement worker")
    return scrapes[-1]


def client_for(server: Server) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=server.url, timeout=10, limits=httpx.Limits(max_connections=100)
    )


@pytest.mark.slow
async def test_totals_stay_exact_across_workers_and_a_killed_worker(server: Server) -> None:
    async with client_for(server) as client:
        start = await scrape(client)
        served_by = await send_requests(client, REQUESTS)
        assert served_by == start.worker_pids
        # Exact at once: a worker counts a request before its response leaves.
        expected = start.requests_total + REQUESTS
        assert (await scrape(client)).requests_total == expected

    dead_pid = min(start.worker_pids)
    os.kill(dead_pid, signal.SIGKILL)
    # A new client: kept-alive connections to the killed worker are gone.
    async with client_for(server) as client:
        replaced = await replacement_up(client, dead_pid)
        # uvicorn's supervisor replaces the worker but leaves its live gauges behind...
        assert dead_pid in replaced.worker_pids
        assert len(replaced.worker_pids - start.worker_pids) == 1
        mark_worker_dead(dead_pid, server.metrics_dir)
        after_death = await scrape(client)
        # ...which mark_worker_dead removes, while the dead worker's counts keep counting.
        assert dead_pid not in after_death.worker_pids
        assert len(after_death.worker_pids) == 2
        assert after_death.requests_total == expected

        await send_requests(client, REQUESTS)
        assert (await scrape(client)).requests_total == expected + REQUESTS

    # No file of the dead worker stays: its counts live on in the archive, its gauges are gone.
    assert not list(server.metrics_dir.glob(f"*_{dead_pid}.db"))
    assert (server.metrics_dir / f"counter_{ARCHIVE_NAME}.db").exists()
    assert len(list(server.metrics_dir.glob("counter_*.db"))) == 3
    assert len(list(server.metrics_dir.glob("gauge_liveall_*.db"))) == 2
