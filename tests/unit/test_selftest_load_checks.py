"""Self-test checks judged from load samples: pool return, connections, exhaustion, leaks, steps."""

from __future__ import annotations

from service.selftest import fixes
from service.selftest.load import LocustStats
from service.selftest.load_checks import (
    MB,
    LoadRun,
    StepLimits,
    db_connections,
    error_rate,
    leak_fit,
    load_step,
    memory_leak,
    pool_exhaustion,
    pool_returns_to_zero,
    step_check,
    worker_resources,
)
from service.selftest.model import Outcome
from service.selftest.sampling import DbActivity, Sample

STATS = LocustStats(requests=6000, failures=0, rps=600.0, p50_ms=4, p95_ms=9, p99_ms=15)
LIMITS = StepLimits(p99_ceiling_ms=500, rps_floor=100)


def sample(
    t_s: float,
    *,
    requests: float = 0,
    rss_mb: dict[str, float] | None = None,
    cpu_s: dict[str, float] | None = None,
    checked_out: float = 0,
    waits: float = 0,
    timeouts: float = 0,
    responses_503: float = 0,
    responses_5xx: float = 0,
    connections: int = 4,
    idle_in_tx: int = 0,
    has_counters: bool = True,
) -> Sample:
    rss = rss_mb if rss_mb is not None else {"101": 80.0, "102": 80.0}
    return Sample(
        t_s=t_s,
        requests=requests,
        rss_bytes={pid: mb * MB for pid, mb in rss.items()},
        cpu_seconds=cpu_s if cpu_s is not None else dict.fromkeys(rss, t_s),
        pool_checked_out=checked_out,
        pool_waits=waits,
        pool_timeouts=timeouts,
        responses_503=responses_503,
        responses_5xx=responses_5xx,
        db=DbActivity(connections, idle_in_tx),
        has_counters=has_counters,
    )


def run_of(
    samples: list[Sample], *, after: Sample | None = None, stats: LocustStats = STATS
) -> LoadRun:
    duration_s = samples[-1].t_s - samples[0].t_s
    return LoadRun(
        50, duration_s, stats, samples[0], samples[1:], after or sample(samples[-1].t_s + 1)
    )


def test_load_step_figures_come_from_locust_and_samples() -> None:
    run = run_of(
        [
            sample(0, cpu_s={"101": 10, "102": 20}, connections=2),
            sample(
                10, cpu_s={"101": 18, "102": 27}, connections=17, rss_mb={"101": 90, "102": 95.5}
            ),
        ]
    )
    step = load_step(run, LIMITS)
    assert (step.users, step.requests, step.rps, step.p95_ms) == (50, 6000, 600.0, 9)
    assert step.worker_cpu_percent == 150.0  # (8 + 7) CPU seconds in 10 s
    assert step.worker_rss_mb == 95.5
    assert step.db_connections == 17


def test_step_fails_at_one_error_in_a_thousand_and_warns_below_3000_requests() -> None:
    healthy = load_step(run_of([sample(0), sample(5)]), LIMITS)
    assert step_check(healthy).result is Outcome.PASS
    failing = LocustStats(10_000, 10, 1.0, 1, 1, 1, top_failure="GET /v1/usage: 503 ×10")
    check = step_check(load_step(run_of([sample(0), sample(5)], stats=failing), LIMITS))
    assert check.figures["top_failure"] == "GET /v1/usage: 503 ×10"
    assert (check.name, check.result, check.fix) == ("load-50-users", Outcome.FAIL, fixes.ERRORS)
    short = LocustStats(requests=2999, failures=2, rps=100.0, p50_ms=1, p95_ms=1, p99_ms=1)
    assert step_check(load_step(run_of([sample(0), sample(5)], stats=short), LIMITS)).result is (
        Outcome.WARN
    )


def test_a_step_over_the_p99_ceiling_or_under_the_rps_floor_fails() -> None:
    at_limits = LocustStats(requests=6000, failures=0, rps=100.0, p50_ms=1, p95_ms=1, p99_ms=500)
    assert step_check(load_step(run_of([sample(0)], stats=at_limits), LIMITS)).result is (
        Outcome.PASS
    )
    slow = LocustStats(requests=6000, failures=0, rps=600.0, p50_ms=1, p95_ms=1, p99_ms=501)
    trickle = LocustStats(requests=6000, failures=0, rps=99.9, p50_ms=1, p95_ms=1, p99_ms=1)
    for stats in (slow, trickle):
        step = load_step(run_of([sample(0)], stats=stats), LIMITS)
        check = step_check(step)
        assert (check.result, check.fix) == (Outcome.FAIL, fixes.SLOW_STEP)
        assert "p99 ≤ 500 ms and ≥ 100 req/s" in check.criterion
        assert (step.p99_ceiling_ms, step.rps_floor) == (500, 100)


def test_pool_that_moved_and_returned_passes() -> None:
    run = run_of([sample(0, waits=10), sample(1, checked_out=7, waits=900)], after=sample(3))
    check = pool_returns_to_zero([run])
    assert check.result is Outcome.PASS
    assert check.figures == {"peak_checked_out": 7, "checkouts": 890, "checked_out_after": 0}


def test_connections_still_checked_out_after_load_name_the_session_fix() -> None:
    run = run_of([sample(0), sample(1, checked_out=7, waits=50)], after=sample(4, checked_out=3))
    check = pool_returns_to_zero([run])
    assert (check.result, check.figures["checked_out_after"]) == (Outcome.FAIL, 3)
    assert check.fix == fixes.SESSION_CONTEXT


def test_pool_metrics_that_never_move_fail() -> None:
    check = pool_returns_to_zero([run_of([sample(0), sample(1)])])
    assert (check.result, check.fix) == (Outcome.FAIL, fixes.METRICS_MISSING)


def test_connections_over_the_bound_fail_with_the_worker_budget_fix() -> None:
    # Two worker pids report under load: the bound is 2 × 40.
    check = db_connections([run_of([sample(0), sample(1, connections=81)])], per_worker=40)
    figures = (check.result, check.figures["peak_connections"], check.figures["bound"])
    assert figures == (Outcome.FAIL, 81, 80)
    assert check.fix == fixes.WORKER_BUDGET
    at_bound = run_of([sample(0), sample(1, connections=80)])
    assert db_connections([at_bound], per_worker=40).result is Outcome.PASS


def test_no_service_connection_at_all_is_not_judged() -> None:
    check = db_connections(
        [run_of([sample(0, connections=0), sample(1, connections=0)])], per_worker=40
    )
    assert (check.result, check.fix) == (Outcome.WARN, fixes.NO_SERVICE_CONNECTIONS)


def test_the_bound_falls_back_to_the_expected_workers_when_none_report() -> None:
    silent = run_of([sample(0, rss_mb={}), sample(1, rss_mb={}, connections=50)])
    assert db_connections([silent], per_worker=10, expected_workers=4).figures["bound"] == 40
    assert db_connections([silent], per_worker=10).figures["bound"] == 10


def test_idle_in_transaction_after_load_names_the_session_fix() -> None:
    run = run_of([sample(0), sample(1)], after=sample(2, idle_in_tx=2))
    check = db_connections([run], per_worker=40)
    assert (check.result, check.fix) == (Outcome.FAIL, fixes.SESSION_CONTEXT)


def test_pool_timeouts_or_503s_mean_exhaustion() -> None:
    timed_out = run_of([sample(0, timeouts=2), sample(1)], after=sample(2, timeouts=5))
    check = pool_exhaustion([timed_out])
    assert (check.result, check.figures["pool_timeouts"], check.fix) == (
        Outcome.FAIL,
        3,
        fixes.POOL_SIZE,
    )
    unavailable = run_of([sample(0), sample(1)], after=sample(2, responses_503=1))
    assert pool_exhaustion([unavailable]).result is Outcome.FAIL
    assert pool_exhaustion([run_of([sample(0), sample(1)])]).result is Outcome.PASS


def test_exhaustion_without_the_counters_is_not_judged() -> None:
    blind = run_of([sample(0, has_counters=False), sample(1)], after=sample(2, has_counters=False))
    check = pool_exhaustion([blind])
    assert (check.result, check.fix) == (Outcome.WARN, fixes.METRICS_MISSING)
    assert check.figures["pool_timeouts"] == "not measured"


def test_error_rate_sums_every_step() -> None:
    a = run_of([sample(0), sample(1)], stats=LocustStats(3000, 2, 1.0, 1, 1, 1))
    b = run_of(
        [sample(1), sample(2)],
        stats=LocustStats(3000, 3, 1.0, 1, 1, 1),
        after=sample(3, requests=6000, responses_5xx=5),
    )
    check = error_rate([a, b])
    assert check.figures == {
        "requests": 6000,
        "failures": 5,
        "error_rate": 0.000833,
        "served": 6000,
        "server_5xx": 5,
        "server_5xx_rate": 0.000833,
    }
    assert check.result is Outcome.PASS
    c = run_of([sample(0), sample(1)], stats=LocustStats(3000, 4, 1.0, 1, 1, 1))
    assert error_rate([a, b, c]).result is Outcome.FAIL  # 9 in 9,000 is not under 0.1 %


def test_the_deployments_own_5xx_fail_the_error_rate_though_ours_all_passed() -> None:
    # Other clients of the deployment met 50 server errors in 10,000 served while ours met none.
    run = run_of([sample(0), sample(1)], after=sample(2, requests=10_000, responses_5xx=50))
    check = error_rate([run])
    assert (check.result, check.figures["server_5xx"], check.fix) == (
        Outcome.FAIL,
        50,
        fixes.ERRORS,
    )


def test_an_error_rate_without_the_deployments_counters_is_a_warning() -> None:
    run = run_of([sample(0, has_counters=False), sample(1)], after=sample(2, has_counters=False))
    check = error_rate([run])
    assert (check.result, check.figures["server_5xx"]) == (Outcome.WARN, "not measured")


def leak_run(mb_per_sample: float, *, noise: float = 0.0, points: int = 21) -> LoadRun:
    """Two workers; the deployment serves 1,000 requests between samples (500 each)."""
    samples = [
        sample(
            i * 0.5,
            requests=1000 * i,
            rss_mb={
                "101": 80 + mb_per_sample * i + (noise if i % 2 else -noise),
                "102": 90 + (noise if i % 3 else 0),
            },
        )
        for i in range(points)
    ]
    return run_of(samples)


def test_leak_slope_is_per_thousand_requests_the_worker_served() -> None:
    fit = leak_fit(leak_run(1.0))
    # 1 MB per 500 requests of its own is 2 MB per 1,000; 13 samples from t = 4 s (40 % of 10 s).
    assert fit.slopes == {"101": 2.0, "102": 0.0}
    assert (fit.growth_mb, fit.points, fit.requests_per_worker) == (12.0, 13, 6000)


def test_growing_memory_is_a_leak() -> None:
    check = memory_leak(leak_run(1.0))
    assert (check.name, check.result, check.fix) == ("memory-leak", Outcome.FAIL, fixes.MEMORY_LEAK)
    assert check.figures["worst_mb_per_1k_requests"] == 2.0


def test_one_kilobyte_per_request_is_a_leak() -> None:
    # 1 KiB for each of a worker's 500 requests between samples: 0.49 MB per sample.
    check = memory_leak(leak_run(500 * 1024 / MB))
    assert check.result is Outcome.FAIL
    assert check.figures["worst_mb_per_1k_requests"] == 0.977


def test_growth_under_the_floor_is_not_a_leak() -> None:
    # 0.6 MB per 1,000 requests over 3,000 requests per worker: 1.8 MB in all, under the 2 MB floor.
    check = memory_leak(leak_run(0.3, points=12))
    assert (check.figures["worst_mb_per_1k_requests"], check.figures["growth_mb"]) == (0.6, 1.8)
    assert check.figures["requests_per_worker"] == 3000
    assert check.result is Outcome.PASS


def test_flat_noisy_memory_is_not_a_leak() -> None:
    check = memory_leak(leak_run(0.0, noise=3.0))
    assert (check.result, check.figures["worst_mb_per_1k_requests"]) == (Outcome.PASS, 0.0)


def test_too_few_samples_or_requests_after_warm_up_are_not_judged() -> None:
    assert memory_leak(leak_run(1.0, points=6)).result is Outcome.WARN
    few = run_of([sample(i * 0.5, requests=100 * i, rss_mb={"101": 80 + i}) for i in range(21)])
    check = memory_leak(few)
    assert (check.result, check.figures["requests_per_worker"]) == (Outcome.WARN, 1200)


def test_no_memory_series_is_not_judged() -> None:
    silent = run_of([sample(i, requests=1000 * i, rss_mb={}) for i in range(21)])
    assert memory_leak(silent).result is Outcome.WARN


def test_worker_resources_need_moving_memory_and_cpu_from_every_worker() -> None:
    run = run_of([sample(0, cpu_s={"101": 1, "102": 1}), sample(2, cpu_s={"101": 2, "102": 3})])
    steps = [load_step(run, LIMITS)]
    check = worker_resources([run], steps, expected_workers=2)
    assert check.result is Outcome.PASS
    assert check.figures == {
        "workers": 2,
        "expected": 2,
        "idle_workers": "none",
        "cpu_percent_50u": 150.0,
        "max_rss_mb_50u": 80.0,
    }
    assert worker_resources([run], steps, expected_workers=3).result is Outcome.FAIL
    frozen = run_of([sample(0, cpu_s={"101": 1, "102": 1}), sample(2, cpu_s={"101": 2, "102": 1})])
    check = worker_resources([frozen], steps, expected_workers=2)
    assert (check.result, check.figures["idle_workers"]) == (Outcome.FAIL, "102")
    assert check.fix == fixes.WORKER_RESOURCES
    no_cpu = run_of([sample(0, cpu_s={}), sample(1, cpu_s={})])
    assert worker_resources([no_cpu], steps, expected_workers=None).result is Outcome.FAIL
