"""Each check that talks to the deployment fails on the fault it is there to catch, naming its fix.

The faults are real configuration (a dead Redis, another pepper, a wrong worker count), app
variants built around the real app (`selftest_variants`), or a patch loaded into the CLI the
self-test runs; production code has no switch for any of them. No assertion rests on the machine
being fast: a fault is chosen so that its figure cannot reach the pass side however busy it is.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from service.config import RedisErrorPolicy, Settings
from service.harness.gatekey import cli_env, run_cli
from service.harness.processes import free_port
from service.selftest import fixes
from service.selftest.checks_fullstack import ACCURACY_REQUESTS
from service.selftest.load_checks import StepLimits
from service.selftest.load_runs import LoadPlan
from service.selftest.model import Outcome, Report
from service.selftest.runner import Options, run_selftest
from tests.integration import selftest_variants
from tests.integration.selftest_support import (
    ANY_SPEED,
    Quiet,
    assert_fails,
    assert_leak_is_never_a_pass,
    checks_of,
    gatekey_serving,
    short_run,
    variant,
)

# Each runs a real self-test: minutes in all, so `make test-selftest` runs them (CI too).
pytestmark = pytest.mark.selftest

SITECUSTOMIZE = """
import alembic.command

def _refuse(*args, **kwargs):
    raise RuntimeError("downgrade refused: injected by the migration-chain fault test")

alembic.command.downgrade = _refuse
"""


async def run_only(
    settings: Settings, url: str, *checks: str, workers: int | None = None
) -> Report:
    options = Options(url=url, workers=workers, only=frozenset(checks))
    return await run_selftest(settings, options, Quiet())


async def test_a_dead_redis_fails_health_and_an_allow_policy_fails_the_limiter(
    stack_settings: Settings, tmp_path: Path
) -> None:
    dead = stack_settings.model_copy(
        update={
            "redis_url": f"redis://127.0.0.1:{free_port()}/0",
            "rate_limit_on_redis_error": RedisErrorPolicy.ALLOW,
        }
    )
    async with gatekey_serving(dead, 2, tmp_path / "server.log") as url:
        report = await run_only(stack_settings, url, "health", "limiter")
    health = assert_fails(report, "health", fixes.HEALTH)
    assert (health["readyz"], health["database"]) == (200, "ok")
    assert health["redis"] != "ok"
    limiter = assert_fails(report, "limiter", fixes.LIMIT_RESPONSES)
    assert limiter["statuses"] == "200 200 200 200"


async def test_a_server_with_another_pepper_refuses_cli_keys(
    stack_settings: Settings, tmp_path: Path
) -> None:
    peppered = stack_settings.model_copy(update={"key_pepper": SecretStr("x" * 32)})
    async with gatekey_serving(peppered, 2, tmp_path / "server.log") as url:
        report = await run_only(stack_settings, url, "keys", "key-validates")
    keys = assert_fails(report, "keys", fixes.KEY_VALIDATION)
    assert (keys["bad_checksum"], keys["bearer"]) == ("401 MALFORMED", 401)
    validates = assert_fails(report, "key-validates", fixes.KEY_VALIDATION)
    assert (validates["whoami"], validates["auth"]) == (401, 401)
    assert "KEY_PEPPER" in fixes.KEY_VALIDATION


async def test_fewer_workers_than_expected_fail_workers(
    stack_settings: Settings, tmp_path: Path
) -> None:
    async with gatekey_serving(stack_settings, 2, tmp_path / "server.log") as url:
        report = await run_only(stack_settings, url, "workers", workers=3)
    figures = assert_fails(report, "workers", fixes.WORKERS)
    assert (figures["workers"], figures["expected"]) == (2, 3)


@pytest.mark.parametrize("attempt", range(3))
async def test_the_server_it_starts_passes_workers_right_after_start_up(
    stack_settings: Settings, attempt: int
) -> None:
    """The check runs as soon as `/readyz` answered, when the second worker may still be
    starting: it waits for every worker process the server runs to report."""
    options = Options(workers=2, only=frozenset({"workers"}))
    report = await run_selftest(stack_settings, options, Quiet())
    check = checks_of(report)["workers"]
    assert check.result is Outcome.PASS, check.figures
    assert (check.figures["workers"], check.figures["expected"]) == (2, 2)
    assert check.figures["pids"] == check.figures["processes"]


async def test_a_server_without_metrics_fails_metrics(
    stack_settings: Settings, tmp_path: Path
) -> None:
    async with variant(stack_settings, "no_metrics_app", tmp_path) as url:
        report = await run_only(stack_settings, url, "metrics")
    figures = assert_fails(report, "metrics", fixes.METRICS_MISSING)
    assert "gatekey_http_requests_total" in str(figures["missing"])


async def test_a_cache_nothing_empties_fails_revocation(
    stack_settings: Settings, tmp_path: Path
) -> None:
    async with variant(stack_settings, "stale_cache_app", tmp_path) as url:
        report = await run_only(stack_settings, url, "revoke-within-1s")
    figures = assert_fails(report, "revoke-within-1s", fixes.KEY_CACHE)
    assert figures["not_401_after_1s"] == figures["requests_after_1s"]


async def test_requests_counted_twice_fail_metric_accuracy(
    stack_settings: Settings, tmp_path: Path
) -> None:
    async with variant(stack_settings, "double_counting_app", tmp_path) as url:
        report = await run_only(stack_settings, url, "metric-accuracy")
    figures = assert_fails(report, "metric-accuracy", fixes.METRICS_MULTIPROCESS)
    assert figures == {"sent": ACCURACY_REQUESTS, "counted": 2 * ACCURACY_REQUESTS}


async def test_a_downgrade_that_fails_breaks_the_migration_chain(
    stack_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with gatekey_serving(stack_settings, 1, tmp_path / "server.log") as url:
        # Only the `gatekey db ...` runs the self-test starts from here on load the patch.
        (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
        monkeypatch.setenv("PYTHONPATH", str(tmp_path))
        report = await run_only(stack_settings, url, "migration-chain")
    figures = assert_fails(report, "migration-chain", fixes.MIGRATIONS)
    assert figures["steps"] == "upgrade:ok downgrade base:failed"
    assert "downgrade refused" in str(figures["error"])


async def test_resource_gauges_that_stand_still_fail_worker_resources(
    stack_settings: Settings, tmp_path: Path
) -> None:
    async with variant(stack_settings, "frozen_resources_app", tmp_path) as url:
        options = short_run(url=url, workers=2, only=frozenset({"worker-resources"}))
        report = await run_selftest(stack_settings, options, Quiet())
    figures = assert_fails(report, "worker-resources", fixes.WORKER_RESOURCES)
    assert figures["workers"] == 2
    assert len(str(figures["idle_workers"]).split()) == 2


async def test_a_slow_server_fails_the_load_step_on_latency_and_throughput(
    stack_settings: Settings, tmp_path: Path
) -> None:
    """Every API answer takes 1.5 s: p99 ≥ 1,500 ms and 50 users serve at most ~33 req/s."""
    limits = StepLimits(p99_ceiling_ms=1000, rps_floor=100)
    async with variant(stack_settings, "slow_app", tmp_path) as url:
        options = short_run(limits=limits, url=url, only=frozenset({"load-steps"}))
        report = await run_selftest(stack_settings, options, Quiet())
    figures = assert_fails(report, "load-50-users", fixes.SLOW_STEP)
    assert float(figures["p99_ms"]) >= 1000 * selftest_variants.SLOW_REQUEST_S
    assert float(figures["rps"]) < 100
    assert float(figures["error_rate"]) == 0
    assert (report.load[0].p99_ceiling_ms, report.load[0].rps_floor) == (1000, 100)


@contextlib.asynccontextmanager
async def another_client_meeting_errors(url: str) -> AsyncIterator[list[int]]:
    """Calls the variant's failing route every 20 ms for the life of the block."""
    statuses: list[int] = []

    async def call() -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            while True:
                response = await client.get(url + selftest_variants.FAULT_PATH)
                statuses.append(response.status_code)
                await asyncio.sleep(0.02)

    task = asyncio.create_task(call())
    try:
        yield statuses
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_the_deployments_own_5xx_fail_the_error_rate(
    stack_settings: Settings, tmp_path: Path
) -> None:
    """Another client meets 500s on a route the self-test never calls: its own requests all pass,
    the deployment's counters do not."""
    async with (
        variant(stack_settings, "failing_route_app", tmp_path) as url,
        another_client_meeting_errors(url) as statuses,
    ):
        options = short_run(url=url, only=frozenset({"error-rate"}))
        report = await run_selftest(stack_settings, options, Quiet())
    assert set(statuses) == {500}
    figures = assert_fails(report, "error-rate", fixes.ERRORS)
    assert figures["failures"] == 0
    assert int(str(figures["server_5xx"])) > 0
    assert float(str(figures["server_5xx_rate"])) >= 0.001


async def test_one_kilobyte_kept_per_request_is_a_leak_at_the_quick_duration(
    stack_settings: Settings, tmp_path: Path
) -> None:
    """The quick run's shape: a warm-up step ended at 3,000 requests, then a 10 s step judged."""
    plan = LoadPlan(users=(50, 100), duration_s=10.0, stop_after=3000, limits=ANY_SPEED)
    async with variant(stack_settings, "kilobyte_hoarding_app", tmp_path) as url:
        options = Options(url=url, load=plan, only=frozenset({"memory-leak"}))
        report = await run_selftest(stack_settings, options, Quiet())
    assert_leak_is_never_a_pass(report)


def test_a_setting_that_does_not_parse_fails_the_selftest_settings_check(
    stack_settings: Settings, tmp_path: Path
) -> None:
    report = tmp_path / "report.json"
    result = run_cli(
        "selftest",
        "--quick",
        "--json",
        str(report),
        env=cli_env(stack_settings, DATABASE_POOL_SIZE="0", COLUMNS="200"),
    )
    assert result.returncode == 1, result.stderr
    text = report.read_text()
    assert '"verdict": "NO-GO"' in text
    assert '"name": "settings"' in text
    assert "DATABASE_POOL_SIZE" in text
    assert fixes.SETTINGS in text
