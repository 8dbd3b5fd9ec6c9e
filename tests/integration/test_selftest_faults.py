"""The self-test catches real faults in real servers, and passes the healthy stack.

Each test runs only the checks its fault concerns, with one short load step, so the whole file
stays around a minute and a half on two cores.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from itertools import cycle
from pathlib import Path

import pytest

from service.config import RateLimitBackend, Settings
from service.selftest import fixes
from service.selftest.context import EXACT_LIMIT
from service.selftest.load_checks import MAX_ERROR_RATE
from service.selftest.model import LoadStep, Outcome, Report, Verdict
from service.selftest.runner import Options, run_selftest
from tests.integration import selftest_variants
from tests.integration.selftest_support import (
    Quiet,
    assert_leak_is_never_a_pass,
    checks_of,
    gatekey_serving,
    short_run,
    variant,
)

# Each runs a real self-test: minutes in all, so `make test-selftest` runs them (CI too).
pytestmark = pytest.mark.selftest

# The checks the faults below trip; the healthy stack must pass every one of them.
FAULT_CHECKS = frozenset(
    {
        "exact-limit",
        "pool-returns-to-zero",
        "worker-resources",
        "db-connections",
        "pool-exhaustion",
        "error-rate",
        "memory-leak",
        "load-steps",
    }
)

# A baseline no run here comes near (two cores serve thousands of requests/s, not a million), so
# the drop stays above 90 % however much else the machine is doing meanwhile.
UNREACHABLE_BASELINE = LoadStep(
    users=50,
    requests=5_000_000,
    rps=1_000_000.0,
    p50_ms=1.0,
    p95_ms=2.0,
    p99_ms=3.0,
    error_rate=0.0,
)


@pytest.fixture(scope="module")
async def healthy_url(
    stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    log = tmp_path_factory.mktemp("healthy") / "server.log"
    async with gatekey_serving(stack_settings, 2, log) as url:
        yield url


@pytest.fixture(scope="module")
async def healthy_report(stack_settings: Settings, healthy_url: str) -> Report:
    options = short_run(url=healthy_url, only=FAULT_CHECKS)
    return await run_selftest(stack_settings, options, Quiet())


async def test_healthy_stack_is_go(healthy_report: Report) -> None:
    """(a) Every check the faults trip passes on `gatekey serve --workers 2`."""
    assert {c.name: c.figures for c in healthy_report.checks if c.result is Outcome.FAIL} == {}
    assert healthy_report.verdict is Verdict.GO
    checks = checks_of(healthy_report)
    assert checks["exact-limit"].figures["admitted"] == EXACT_LIMIT
    assert checks["pool-returns-to-zero"].figures["checked_out_after"] == 0
    assert checks["db-connections"].figures["bound"] == 2 * (5 + 5)


async def test_in_process_limits_behind_a_balancer_are_no_go(
    stack_settings: Settings, tmp_path: Path
) -> None:
    """(b) Two single-process instances with RATE_LIMIT_BACKEND=memory behind one address."""
    memory = stack_settings.model_copy(update={"rate_limit_backend": RateLimitBackend.MEMORY})
    async with contextlib.AsyncExitStack() as stack:
        urls = [
            await stack.enter_async_context(gatekey_serving(memory, 1, tmp_path / f"{i}.log"))
            for i in range(2)
        ]
        proxy_url = await stack.enter_async_context(round_robin_proxy(urls))
        report = await run_selftest(
            memory, Options(url=proxy_url, only=frozenset({"exact-limit"})), Quiet()
        )
    check = checks_of(report)["exact-limit"]
    assert check.result is Outcome.FAIL
    assert check.figures["admitted"] == 2 * EXACT_LIMIT, check.figures
    assert check.fix == fixes.REDIS_BACKEND
    assert "RATE_LIMIT_BACKEND=redis" in check.fix
    assert report.verdict is Verdict.NO_GO


async def test_sessions_kept_open_are_no_go(stack_settings: Settings, tmp_path: Path) -> None:
    """(c) An app that opens sessions outside `async with get_session()` and keeps them."""
    only = frozenset({"pool-returns-to-zero", "db-connections"})
    async with variant(stack_settings, "leaky_app", tmp_path) as url:
        report = await run_selftest(stack_settings, short_run(url=url, only=only), Quiet())
    leaked = 2 * selftest_variants.LEAKED_SESSIONS_PER_WORKER
    pool, connections = (
        checks_of(report)["pool-returns-to-zero"],
        checks_of(report)["db-connections"],
    )
    assert (pool.result, pool.figures["checked_out_after"]) == (Outcome.FAIL, leaked)
    assert (connections.result, connections.figures["idle_in_transaction_after"]) == (
        Outcome.FAIL,
        leaked,
    )
    assert pool.fix == connections.fix == fixes.SESSION_CONTEXT
    assert "async with get_session()" in fixes.SESSION_CONTEXT
    assert report.verdict is Verdict.NO_GO


async def test_a_pool_of_one_under_load_is_no_go(stack_settings: Settings) -> None:
    """(d) DATABASE_POOL_SIZE=1, no overflow, a 50 ms pool timeout; the self-test starts it."""
    tiny = stack_settings.model_copy(
        update={
            "database_pool_size": 1,
            "database_pool_max_overflow": 0,
            "database_pool_timeout": 0.05,
        }
    )
    only = frozenset({"pool-exhaustion", "error-rate"})
    report = await run_selftest(tiny, short_run(workers=2, only=only), Quiet())
    exhaustion, errors = checks_of(report)["pool-exhaustion"], checks_of(report)["error-rate"]
    assert exhaustion.result is Outcome.FAIL, exhaustion.figures
    assert float(exhaustion.figures["pool_timeouts"]) > 0
    assert float(exhaustion.figures["responses_503"]) > 0
    assert exhaustion.fix == fixes.POOL_SIZE
    assert "DATABASE_POOL_SIZE" in exhaustion.fix
    # The 503s are the load's failed requests, far above the 0.1 % the check allows.
    assert errors.result is Outcome.FAIL, errors.figures
    requests, failed = float(errors.figures["requests"]), float(errors.figures["failures"])
    assert 0 < failed <= requests
    assert float(errors.figures["error_rate"]) == pytest.approx(failed / requests, abs=1e-6)
    assert float(errors.figures["error_rate"]) > MAX_ERROR_RATE
    assert errors.fix == fixes.ERRORS
    assert report.verdict is Verdict.NO_GO


async def test_memory_kept_per_request_is_no_go(stack_settings: Settings, tmp_path: Path) -> None:
    """(e) An app that keeps 32 KiB of every request."""
    async with variant(stack_settings, "hoarding_app", tmp_path) as url:
        options = short_run(url=url, only=frozenset({"memory-leak"}))
        report = await run_selftest(stack_settings, options, Quiet())
    assert_leak_is_never_a_pass(report)
    if checks_of(report)["memory-leak"].result is Outcome.FAIL:
        # 32 KiB a request is 32 MB per 1,000; each worker's share of the requests is only
        # roughly even behind a shared socket: far above 0.5 is the point.
        assert float(checks_of(report)["memory-leak"].figures["worst_mb_per_1k_requests"]) > 10


async def test_a_throughput_far_below_the_baseline_is_no_go(
    stack_settings: Settings, healthy_url: str
) -> None:
    """(f) A baseline report whose throughput this run cannot reach."""
    options = short_run(
        url=healthy_url, only=frozenset({"load-steps"}), baseline=(UNREACHABLE_BASELINE,)
    )
    report = await run_selftest(stack_settings, options, Quiet())
    degradation = checks_of(report)["degradation"]
    assert degradation.result is Outcome.FAIL, degradation.figures
    assert float(degradation.figures["rps_drop_50u"]) > 0.9
    assert degradation.fix == fixes.LATENCY
    assert report.verdict is Verdict.NO_GO


@contextlib.asynccontextmanager
async def round_robin_proxy(urls: list[str]) -> AsyncIterator[str]:
    """One address in front of several: each new connection goes to the next backend."""
    backends = cycle(int(url.rsplit(":", 1)[1]) for url in urls)

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(
        client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(
            "127.0.0.1", next(backends)
        )
        await asyncio.gather(
            pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer)
        )

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()
