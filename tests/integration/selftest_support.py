"""What the self-test's integration tests share: test-sized settings and servers on free ports."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from service.config import Settings
from service.harness.gatekey import cli_env, serve_command
from service.harness.processes import free_port
from service.selftest import fixes
from service.selftest.load_checks import LEAK_MB_PER_1K_REQUESTS, LEAK_MIN_REQUESTS, StepLimits
from service.selftest.load_runs import LoadPlan
from service.selftest.model import CheckResult, Figure, Outcome, Report, Verdict
from service.selftest.runner import Options
from service.selftest.target import server_process

# Healthy runs are judged on what the deployment does, not on how fast a shared two-core test
# machine is: the p99 ceiling and req/s floor are proved by a slow server's test instead.
ANY_SPEED = StepLimits(p99_ceiling_ms=60_000, rps_floor=1)


class Quiet:
    """Progress nobody watches."""

    def status(self, text: str) -> None:
        pass

    def done(self, result: CheckResult) -> None:
        pass


@contextlib.asynccontextmanager
async def serving(
    command: list[str], env: dict[str, str], log: Path, port: int
) -> AsyncIterator[str]:
    """A server process until it answers `/readyz`; its URL; stopped by pid afterwards."""
    async with (
        httpx.AsyncClient(timeout=10) as client,
        server_process(command, env=env, port=port, log=log, client=client) as deployment,
    ):
        yield deployment.url


@contextlib.asynccontextmanager
async def gatekey_serving(settings: Settings, workers: int, log: Path) -> AsyncIterator[str]:
    """`gatekey serve --workers N` with `settings`, on a free port."""
    port = free_port()
    async with serving(serve_command(port, workers=workers), cli_env(settings), log, port) as url:
        yield url


def short_run(limits: StepLimits = ANY_SPEED, **options: Any) -> Options:
    """One load step of 50 users for 5 s: enough requests to judge, short enough for CI."""
    return Options(load=LoadPlan(users=(50,), duration_s=5.0, limits=limits), **options)


def checks_of(report: Report) -> dict[str, CheckResult]:
    return {check.name: check for check in report.checks}


@contextlib.asynccontextmanager
async def variant(settings: Settings, factory: str, tmp_path: Path) -> AsyncIterator[str]:
    """A test app variant under uvicorn's own supervisor, metrics in multiprocess mode."""
    port, metrics_dir = free_port(), tmp_path / "metrics"
    metrics_dir.mkdir()
    env = cli_env(settings, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), GATEKEY_WORKER_COUNT="2")
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        f"tests.integration.selftest_variants:{factory}",
        "--factory",
        "--workers",
        "2",
        "--port",
        str(port),
        "--no-access-log",
    ]
    async with serving(command, env, tmp_path / f"{factory}.log", port) as url:
        yield url


def assert_fails(report: Report, name: str, fix: str) -> dict[str, Figure]:
    check = checks_of(report)[name]
    assert (check.result, check.fix) == (Outcome.FAIL, fix), check.figures
    assert report.verdict is Verdict.NO_GO
    return dict(check.figures)


def assert_leak_is_never_a_pass(report: Report) -> None:
    """A leak fails whenever it is judged; a machine too busy to serve the requests the slope
    needs in the step's time makes the check say "not judged", which is never a pass either."""
    check = checks_of(report)["memory-leak"]
    served = float(check.figures["requests_per_worker"])
    if check.result is Outcome.WARN:
        assert served < LEAK_MIN_REQUESTS, check.figures
        return
    figures = assert_fails(report, "memory-leak", fixes.MEMORY_LEAK)
    assert float(figures["worst_mb_per_1k_requests"]) > LEAK_MB_PER_1K_REQUESTS
