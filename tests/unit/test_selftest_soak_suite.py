"""The soak's judge (a series that keeps growing after the warm-up fails, with its fix) and the
suite check's reading of pytest's JUnit XML. Pure: samples and files made here."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.selftest import fixes
from service.selftest.load import LocustStats
from service.selftest.model import Outcome, SoakSample
from service.selftest.soak import DEPLOYMENT, growths, soak_check, warmup_s
from service.selftest.suite import read_junit, suite_check

STATS = LocustStats(requests=100_000, failures=0, rps=500.0, p50_ms=5, p95_ms=9, p99_ms=12)
DURATION_S = 600.0


def flat_run(*, rss_slope_mb_per_s: float = 0.0, fd_step_every: int = 0) -> list[SoakSample]:
    """A 10-minute soak sampled every 10 s: two workers, a pool that fills in the first minute."""
    samples = []
    for i in range(61):
        t = 10.0 * i
        filled = min(i, 6)
        for pid, base in (("101", 80.0), ("102", 82.0)):
            rss = base + filled + rss_slope_mb_per_s * t + (0.3 if i % 2 else -0.3)
            fds = 30 + filled + (i // fd_step_every if fd_step_every else 0)
            samples += [SoakSample(t, "rss_mb", pid, rss), SoakSample(t, "open_fds", pid, fds)]
        samples += [
            SoakSample(t, "pg_connections", DEPLOYMENT, 4 + filled),
            SoakSample(t, "redis_clients", DEPLOYMENT, 6),
        ]
    return samples


def test_a_steady_deployment_passes_after_its_warm_up() -> None:
    check = soak_check(flat_run(), STATS, duration_s=DURATION_S, started_s=0.0, pool_size=30)
    assert check.result is Outcome.PASS, check.figures
    assert check.figures["samples"] == 61
    assert abs(float(check.figures["rss_mb_per_10min"])) < 0.1
    assert "1 MB per 10 min" in check.criterion


def test_rss_growing_2_mb_per_10_minutes_fails_naming_the_worker() -> None:
    samples = flat_run(rss_slope_mb_per_s=2.0 / 600)
    check = soak_check(samples, STATS, duration_s=DURATION_S, started_s=0.0, pool_size=30)
    assert check.result is Outcome.FAIL
    assert float(check.figures["rss_mb_per_10min"]) == pytest.approx(2.0, abs=0.05)
    assert check.figures["growing"] == "rss_mb@101 rss_mb@102"
    assert check.fix == fixes.MEMORY_LEAK


def test_one_descriptor_a_minute_is_a_climb() -> None:
    check = soak_check(
        flat_run(fd_step_every=6), STATS, duration_s=DURATION_S, started_s=0.0, pool_size=30
    )
    assert check.result is Outcome.FAIL
    assert check.figures["growing"] == "open_fds@101 open_fds@102"
    assert check.fix == fixes.SOAK_FIXES["open_fds"]


def test_connections_climbing_past_what_the_pools_keep_fail() -> None:
    samples = [s for s in flat_run() if s.series != "pg_connections"]
    samples += [SoakSample(10.0 * i, "pg_connections", DEPLOYMENT, 10 + i) for i in range(61)]
    within = soak_check(samples, STATS, duration_s=DURATION_S, started_s=0.0, pool_size=40)
    assert within.result is Outcome.PASS, within.figures  # 70 ≤ 2 workers × 40: the pools filling
    beyond = soak_check(samples, STATS, duration_s=DURATION_S, started_s=0.0, pool_size=30)
    assert beyond.result is Outcome.FAIL
    assert beyond.figures["growing"] == "pg_connections@deployment"
    assert beyond.fix == fixes.SESSION_CONTEXT


def test_the_warm_up_is_not_judged() -> None:
    assert warmup_s(DURATION_S) == 120.0
    assert warmup_s(120.0) == 30.0
    fitted = growths(flat_run(), warmup_s(DURATION_S))
    pool = next(g for g in fitted if g.series == "pg_connections")
    assert pool.growth == pytest.approx(0.0)


def test_without_memory_figures_the_soak_is_not_a_pass() -> None:
    samples = [s for s in flat_run() if s.series != "rss_mb"]
    check = soak_check(samples, STATS, duration_s=DURATION_S, started_s=0.0, pool_size=30)
    assert (check.result, check.fix) == (Outcome.WARN, fixes.SOAK_UNMEASURED)
    assert check.figures["rss_mb_per_10min"] == "not measured"


def test_junit_counts_and_failing_ids(tmp_path: Path) -> None:
    junit = tmp_path / "suite.xml"
    junit.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.integration.test_cli" name="test_a"/>'
        '<testcase classname="tests.integration.test_cli" name="test_b">'
        '<failure message="assert 1 == 2"/></testcase>'
        '<testcase classname="tests.integration.test_usage_flush" name="test_c">'
        '<error message="fixture"/></testcase>'
        '<testcase classname="tests.integration.test_cli" name="test_d"><skipped/></testcase>'
        "</testsuite></testsuites>"
    )
    counts = read_junit(junit)
    assert (counts.passed, counts.failed, counts.skipped) == (1, 2, 1)
    assert counts.failing_ids == [
        "tests/integration/test_cli.py::test_b",
        "tests/integration/test_usage_flush.py::test_c",
    ]
    check = suite_check(counts, returncode=1, duration_s=12.0, last_line="2 failed")
    assert check.result is Outcome.FAIL
    assert (check.figures["passed"], check.figures["failed"], check.figures["skipped"]) == (1, 2, 1)
    assert check.fix == f"{fixes.SUITE_FAILED}: {' '.join(counts.failing_ids)}"


def test_a_suite_that_never_ran_fails_with_its_output() -> None:
    check = suite_check(None, returncode=3, duration_s=1.0, last_line="PostgreSQL does not answer")
    assert check.result is Outcome.FAIL
    assert check.figures["output"] == "PostgreSQL does not answer"
    assert check.fix == fixes.SUITE_DID_NOT_RUN
