"""`gatekey selftest` and `gatekey preflight` end to end: a live two-worker server is GO, bad
input exits 2 in one line, a failed pre-flight exits 1 naming what failed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from service.config import Settings
from service.harness.gatekey import CliResult, cli_env, gatekey_executable, run_cli
from service.selftest.dbprobe import with_database
from tests.integration.selftest_support import gatekey_serving

# Each runs a real self-test: minutes in all, so `make test-selftest` runs them (CI too).
pytestmark = pytest.mark.selftest

EXIT_GO, EXIT_NO_GO, EXIT_COULD_NOT_RUN = 0, 1, 2
# Every check of a full run (pre-flight, probes, load checks, two steps, the server log), less
# the degradation check that needs a baseline, the soak and the suite.
EXPECTED_CHECKS = 7 + 13 + 6 + 2 + 1


def gatekey(settings: Settings, *args: str, timeout: float = 240, **env: str) -> CliResult:
    return run_cli(*args, env=cli_env(settings, COLUMNS="160", **env), timeout_s=timeout)


async def test_a_live_multi_worker_server_is_go(stack_settings: Settings, tmp_path: Path) -> None:
    json_file, html_file = tmp_path / "report.json", tmp_path / "report.html"
    log = tmp_path / "server.log"
    async with gatekey_serving(stack_settings, 2, log) as url:
        result = await asyncio.to_thread(
            gatekey,
            stack_settings,
            "selftest",
            "--url",
            url,
            "--quick",
            "--users",
            "10,50",
            "--workers",
            "2",
            # What is judged is the deployment, not the shared test machine's speed.
            "--p99-ceiling",
            "60000",
            "--rps-floor",
            "1",
            "--json",
            str(json_file),
            "--html",
            str(html_file),
            "--server-log",
            str(log),
        )
    report = json.loads(json_file.read_text())
    failed = {c["name"]: c["figures"] for c in report["checks"] if c["result"] == "fail"}
    assert failed == {}, result.stdout[-3000:]
    assert (result.returncode, report["verdict"], report["target"]) == (EXIT_GO, "GO", url)
    assert len(report["checks"]) == EXPECTED_CHECKS
    assert [step["users"] for step in report["load"]] == [10, 50]
    assert "GO  29 checks" in result.stdout
    assert {c["name"]: c["result"] for c in report["checks"]}["server-log"] == "pass"
    assert html_file.read_text().count("<svg") == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--users", "10,x"], "invalid --users '10,x'"),
        (["--duration", "20 seconds"], "invalid duration '20 seconds'"),
        (["--only", "exact-limit,nonsense"], "unknown check nonsense"),
        (["--workers", "0"], "Invalid value for '--workers'"),
        (["--soak", "30s"], "--soak must be at least 60s"),
        (["--server-log", "/nonexistent/gatekey.log"], "does not exist"),
    ],
)
def test_what_cannot_run_exits_2_with_one_line(
    stack_settings: Settings, args: list[str], message: str
) -> None:
    result = gatekey(stack_settings, "selftest", *args, timeout=30)
    assert result.returncode == EXIT_COULD_NOT_RUN
    assert len(result.stderr.strip().splitlines()) == 1
    assert message in result.stderr


def test_a_baseline_that_is_no_report_exits_2(stack_settings: Settings, tmp_path: Path) -> None:
    baseline = tmp_path / "baseline.json"
    baseline.write_text('{"verdict": "GO"}')
    result = gatekey(stack_settings, "selftest", "--baseline", str(baseline), timeout=30)
    assert result.returncode == EXIT_COULD_NOT_RUN
    assert f"baseline {baseline} is not a selftest --json report" in result.stderr


def test_preflight_exits_1_naming_what_failed(stack_settings: Settings) -> None:
    missing = with_database(stack_settings.database_url, "gatekey_selftest_no_such_db")
    result = gatekey(stack_settings, "preflight", timeout=120, DATABASE_URL=missing)
    assert result.returncode == EXIT_NO_GO
    assert (
        result.stderr.strip()
        == "error: preflight failed: postgres, migrations-at-head, pool-sizing"
    )
    rows = {
        line.split("│")[2].strip(): line.split("│")[3].strip()
        for line in result.stdout.splitlines()
        if line.count("│") > 4 and "preflight" in line
    }
    assert rows == {
        "settings": "pass",
        "pip-check": "pass",
        "postgres": "fail",
        "redis": "pass",
        "migrations-at-head": "fail",
        "pool-sizing": "fail",
        "tests-discoverable": "pass",
    }


def test_preflight_with_a_bad_setting_fails_on_it(stack_settings: Settings) -> None:
    result = gatekey(stack_settings, "preflight", timeout=30, DATABASE_POOL_SIZE="0")
    assert result.returncode == EXIT_NO_GO
    assert result.stderr.strip() == "error: preflight failed: settings"
    assert "DATABASE_POOL_SIZE" in result.stdout


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def is_load_generator(process: psutil.Process) -> bool:
    try:
        return "locust" in " ".join(process.cmdline())
    except psutil.NoSuchProcess:
        return False


def test_sigterm_stops_the_selftest_and_everything_it_started(stack_settings: Settings) -> None:
    command = [gatekey_executable(), "selftest", "--quick", "--only", "load-steps"]
    process = subprocess.Popen(command, env=cli_env(stack_settings), stdout=subprocess.DEVNULL)
    started: list[psutil.Process] = []
    try:
        # Once its server and the load generator run, the selftest has most to clean up.
        deadline = time.monotonic() + 60
        while not any(is_load_generator(p) for p in started):
            assert process.poll() is None, "the selftest ended before its load started"
            assert time.monotonic() < deadline, "no load started within 60 s"
            time.sleep(0.2)
            started = descendants(process.pid)
        process.terminate()
        assert process.wait(timeout=30) == 130
        _, alive = psutil.wait_procs(started, timeout=10)
        assert alive == []
    finally:
        # Whatever the outcome, nothing of this test outlives it.
        for leftover in [*descendants(process.pid), *started]:
            with contextlib.suppress(psutil.NoSuchProcess):
                leftover.kill()
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
