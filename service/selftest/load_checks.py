"""Checks judged from what was seen during the load steps. Pure: figures in, `CheckResult` out."""

from __future__ import annotations

from dataclasses import dataclass

from service.selftest import fixes
from service.selftest.load import LocustStats
from service.selftest.model import CheckResult, Figure, LoadStep, Phase, judge
from service.selftest.sampling import Sample
from service.selftest.stats import theil_sen_slope

MAX_ERROR_RATE = 0.001
MIN_STEP_REQUESTS = 3000
# A leak is memory kept per request. Below 0.5 MB per 1,000 requests (≈500 bytes a request) the
# fitted slope of a healthy worker is within allocator noise on a 5-20 s window; the growth floor
# keeps a short window's jitter from reading as a leak. 500 B/request at 1,000 req/s is 1.8 GB/h.
LEAK_MB_PER_1K_REQUESTS = 0.5
LEAK_MIN_GROWTH_MB = 4.0
WARM_UP_FRACTION = 0.4
MIN_LEAK_POINTS = 6
MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class LoadRun:
    """One load step: Locust's summary plus the deployment seen before, during and after it."""

    users: int
    duration_s: float
    stats: LocustStats
    before: Sample
    samples: list[Sample]
    after: Sample

    @property
    def during(self) -> list[Sample]:
        return [self.before, *self.samples]


def _cpu_percent(first: Sample, last: Sample) -> float:
    elapsed = last.t_s - first.t_s
    if elapsed <= 0:
        return 0.0
    used = sum(
        last.cpu_seconds.get(pid, 0.0) - first.cpu_seconds.get(pid, 0.0) for pid in last.cpu_seconds
    )
    return round(100 * used / elapsed, 1)


def load_step(run: LoadRun) -> LoadStep:
    stats, during = run.stats, run.during
    return LoadStep(
        users=run.users,
        requests=stats.requests,
        rps=round(stats.rps, 1),
        p50_ms=stats.p50_ms,
        p95_ms=stats.p95_ms,
        p99_ms=stats.p99_ms,
        error_rate=round(stats.error_rate, 6),
        failures=stats.failures,
        duration_s=round(run.duration_s, 1),
        worker_cpu_percent=_cpu_percent(during[0], during[-1]),
        worker_rss_mb=round(max(max(s.rss_bytes.values(), default=0) for s in during) / MB, 1),
        db_connections=max(s.db.connections for s in during),
        top_failure=stats.top_failure,
    )


def step_check(step: LoadStep) -> CheckResult:
    return judge(
        Phase.LOAD,
        f"load-{step.users}-users",
        passed=step.error_rate < MAX_ERROR_RATE,
        warned=step.requests < MIN_STEP_REQUESTS,
        figures={
            "requests": step.requests,
            "rps": step.rps,
            "p50_ms": step.p50_ms,
            "p95_ms": step.p95_ms,
            "p99_ms": step.p99_ms,
            "error_rate": step.error_rate,
            "workers_cpu_percent": step.worker_cpu_percent,
            "worker_rss_mb": step.worker_rss_mb,
            "db_connections": step.db_connections,
            **({"top_failure": step.top_failure} if step.top_failure else {}),
        },
        criterion=f"error rate < 0.1 % over ≥ {MIN_STEP_REQUESTS} requests",
        fix=fixes.ERRORS if step.error_rate >= MAX_ERROR_RATE else "run a longer --duration",
    )


def pool_returns_to_zero(runs: list[LoadRun]) -> CheckResult:
    peak = max(s.pool_checked_out for run in runs for s in run.during)
    checkouts = sum(
        run.samples[-1].pool_waits - run.before.pool_waits for run in runs if run.samples
    )
    left = max(run.after.pool_checked_out for run in runs)
    moved = peak > 0 or checkouts > 0
    return judge(
        Phase.PAIRS,
        "pool-returns-to-zero",
        passed=moved and left == 0,
        figures={"peak_checked_out": peak, "checkouts": checkouts, "checked_out_after": left},
        criterion="checked-out connections rise under load and are 0 once it ends",
        fix=fixes.SESSION_CONTEXT if moved else fixes.METRICS_MISSING,
    )


def worker_resources(runs: list[LoadRun]) -> CheckResult:
    pids = {pid for run in runs for s in run.during for pid in s.rss_bytes}
    with_cpu = {pid for run in runs for s in run.during for pid in s.cpu_seconds}
    figures: dict[str, Figure] = {"workers": len(pids)}
    for run in runs:
        step = load_step(run)
        figures[f"cpu_percent_{run.users}u"] = step.worker_cpu_percent
        figures[f"max_rss_mb_{run.users}u"] = step.worker_rss_mb
    return judge(
        Phase.PAIRS,
        "worker-resources",
        passed=bool(pids) and pids == with_cpu,
        figures=figures,
        criterion="every worker reports resident memory and CPU seconds by pid",
        fix=fixes.WORKERS,
    )


def db_connections(
    runs: list[LoadRun], *, per_worker: int, expected_workers: int | None = None
) -> CheckResult:
    """The bound counts the workers seen under load (`expected_workers` when none reports)."""
    peak = max(s.db.connections for run in runs for s in run.during)
    idle_in_tx = max(run.after.db.idle_in_transaction for run in runs)
    seen = max(len(s.rss_bytes) for run in runs for s in run.during)
    bound = (seen or expected_workers or 1) * per_worker
    return judge(
        Phase.FULL_STACK,
        "db-connections",
        passed=peak <= bound and idle_in_tx == 0,
        figures={"peak_connections": peak, "bound": bound, "idle_in_transaction_after": idle_in_tx},
        criterion="pg_stat_activity ≤ workers × (pool + overflow); none idle in transaction after",
        fix=fixes.SESSION_CONTEXT if idle_in_tx else fixes.WORKER_BUDGET,
    )


def pool_exhaustion(runs: list[LoadRun]) -> CheckResult:
    timeouts = sum(run.after.pool_timeouts - run.before.pool_timeouts for run in runs)
    unavailable = sum(run.after.responses_503 - run.before.responses_503 for run in runs)
    return judge(
        Phase.FULL_STACK,
        "pool-exhaustion",
        passed=timeouts == 0 and unavailable == 0,
        figures={"pool_timeouts": timeouts, "responses_503": unavailable},
        criterion="no pool checkout times out and no 503 under the heaviest load",
        fix=fixes.POOL_SIZE,
    )


def error_rate(runs: list[LoadRun]) -> CheckResult:
    requests = sum(run.stats.requests for run in runs)
    failures = sum(run.stats.failures for run in runs)
    rate = failures / requests if requests else 0.0
    return judge(
        Phase.FULL_STACK,
        "error-rate",
        passed=requests > 0 and rate < MAX_ERROR_RATE,
        figures={"requests": requests, "failures": failures, "error_rate": round(rate, 6)},
        criterion="failed requests < 0.1 % over all load steps",
        fix=fixes.ERRORS,
    )


def leak_slopes(run: LoadRun) -> tuple[dict[str, float], float, int]:
    """Per worker: MB kept per 1,000 requests it served after warm-up (an even share of the
    deployment's requests), the largest fitted growth in MB, and the points used."""
    start = run.before.t_s + WARM_UP_FRACTION * (run.samples[-1].t_s - run.before.t_s)
    window = [s for s in run.samples if s.t_s >= start]
    workers = max(1, len(window[-1].rss_bytes)) if window else 1
    slopes: dict[str, float] = {}
    growth = 0.0
    for pid in window[-1].rss_bytes if window else {}:
        points = [s for s in window if pid in s.rss_bytes]
        xs = [s.requests / 1000 / workers for s in points]
        slope = theil_sen_slope(xs, [s.rss_bytes[pid] / MB for s in points])
        slopes[pid] = round(slope, 3)
        growth = max(growth, slope * (xs[-1] - xs[0]))
    return slopes, round(growth, 1), len(window)


def memory_leak(run: LoadRun) -> CheckResult:
    slopes, growth, points = leak_slopes(run)
    worst = max(slopes.values(), default=0.0)
    leaking = worst > LEAK_MB_PER_1K_REQUESTS and growth > LEAK_MIN_GROWTH_MB
    return judge(
        Phase.FULL_STACK,
        "memory-leak",
        passed=bool(slopes) and not leaking,
        warned=points < MIN_LEAK_POINTS,
        figures={
            "users": run.users,
            "worst_mb_per_1k_requests": worst,
            "growth_mb": growth,
            "samples": points,
            "workers": len(slopes),
        },
        criterion=(
            f"after warm-up, resident memory grows ≤ {LEAK_MB_PER_1K_REQUESTS} MB per 1,000 "
            f"requests per worker (or ≤ {LEAK_MIN_GROWTH_MB:.0f} MB in all)"
        ),
        fix=fixes.MEMORY_LEAK,
    )
