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
# A leak is memory kept per request: a fitted slope over 0.5 MB per 1,000 requests a worker served
# (≈500 bytes a request, 1.8 GB an hour at 1,000 req/s) *and* fitted growth over 2 MB fails. The
# growth floor is above what a healthy worker gains once (connections and buffers of a new users
# level, caches: 1.3 MB measured over 530 requests); the slope is judged only from
# LEAK_MIN_REQUESTS per worker, where 1 KB a request (≈1 MB per 1,000) has grown past the floor,
# so 1 KB a request always fails when judged. Fewer requests is a warning, never a pass.
LEAK_MB_PER_1K_REQUESTS = 0.5
LEAK_MIN_GROWTH_MB = 2.0
LEAK_MIN_REQUESTS = 2100
WARM_UP_FRACTION = 0.4
MIN_LEAK_POINTS = 6
MB = 1024 * 1024


P99_CEILING_MS = 1000.0
RPS_FLOOR = 100.0


@dataclass(frozen=True, slots=True)
class StepLimits:
    """What every load step must meet besides the error rate, whatever the baseline: a p99 of
    seconds or a trickle of requests is NO-GO on its own (`--p99-ceiling`, `--rps-floor`)."""

    p99_ceiling_ms: float = P99_CEILING_MS
    rps_floor: float = RPS_FLOOR


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


def load_step(run: LoadRun, limits: StepLimits) -> LoadStep:
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
        p99_ceiling_ms=limits.p99_ceiling_ms,
        rps_floor=limits.rps_floor,
    )


def _step_fix(step: LoadStep) -> str:
    if step.error_rate >= MAX_ERROR_RATE:
        return fixes.ERRORS
    if step.p99_ms > step.p99_ceiling_ms or step.rps < step.rps_floor:
        return fixes.SLOW_STEP
    return "run a longer --duration"


def step_check(step: LoadStep) -> CheckResult:
    return judge(
        Phase.LOAD,
        f"load-{step.users}-users",
        passed=step.error_rate < MAX_ERROR_RATE
        and step.p99_ms <= step.p99_ceiling_ms
        and step.rps >= step.rps_floor,
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
        criterion=f"error rate < 0.1 %, p99 ≤ {step.p99_ceiling_ms:g} ms and ≥ "
        f"{step.rps_floor:g} req/s, over ≥ {MIN_STEP_REQUESTS} requests",
        fix=_step_fix(step),
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


def worker_resources(
    runs: list[LoadRun], steps: list[LoadStep], *, expected_workers: int | None
) -> CheckResult:
    """Each worker's own figures must move under load: a gauge that stands still is a worker that
    serves nothing or a sampler that stopped, and the count must be the deployment's."""
    first: dict[str, float] = {}
    for sample in (s for run in runs for s in run.during):
        for pid, cpu_seconds in sample.cpu_seconds.items():
            first.setdefault(pid, cpu_seconds)
    last = runs[-1].samples[-1] if runs[-1].samples else runs[-1].before
    pids = sorted(set(last.rss_bytes) & set(last.cpu_seconds))
    idle = [pid for pid in pids if last.cpu_seconds[pid] - first.get(pid, 0.0) <= 0]
    figures: dict[str, Figure] = {
        "workers": len(pids),
        "expected": expected_workers or "not known",
        "idle_workers": " ".join(idle) or "none",
    }
    for step in steps:
        figures[f"cpu_percent_{step.users}u"] = step.worker_cpu_percent
        figures[f"max_rss_mb_{step.users}u"] = step.worker_rss_mb
    return judge(
        Phase.PAIRS,
        "worker-resources",
        passed=bool(pids)
        and not idle
        and (expected_workers is None or len(pids) == expected_workers),
        figures=figures,
        criterion="every worker reports resident memory and CPU seconds, its CPU time grows "
        "under load, and as many workers report as the deployment runs",
        fix=fixes.WORKER_RESOURCES,
    )


def db_connections(
    runs: list[LoadRun], *, per_worker: int, expected_workers: int | None = None
) -> CheckResult:
    """The bound counts the workers seen under load (`expected_workers` when none reports). No
    service connection at all is not a pass: the probe looked at the wrong database or name."""
    peak = max(s.db.connections for run in runs for s in run.during)
    idle_in_tx = max(run.after.db.idle_in_transaction for run in runs)
    seen = max(len(s.rss_bytes) for run in runs for s in run.during)
    bound = (seen or expected_workers or 1) * per_worker
    fix = fixes.SESSION_CONTEXT if idle_in_tx else fixes.WORKER_BUDGET
    return judge(
        Phase.FULL_STACK,
        "db-connections",
        passed=peak <= bound and idle_in_tx == 0,
        warned=peak == 0,
        figures={"peak_connections": peak, "bound": bound, "idle_in_transaction_after": idle_in_tx},
        criterion="pg_stat_activity ≤ workers × (pool + overflow); none idle in transaction "
        "after; no service connection seen is not judged",
        fix=fix if peak else fixes.NO_SERVICE_CONNECTIONS,
    )


def _has_counters(runs: list[LoadRun]) -> bool:
    return all(run.before.has_counters and run.after.has_counters for run in runs)


def pool_exhaustion(runs: list[LoadRun]) -> CheckResult:
    timeouts = sum(run.after.pool_timeouts - run.before.pool_timeouts for run in runs)
    unavailable = sum(run.after.responses_503 - run.before.responses_503 for run in runs)
    measured = _has_counters(runs)
    return judge(
        Phase.FULL_STACK,
        "pool-exhaustion",
        passed=timeouts == 0 and unavailable == 0,
        warned=not measured,
        figures={
            "pool_timeouts": timeouts if measured else "not measured",
            "responses_503": unavailable if measured else "not measured",
        },
        criterion="no pool checkout times out and no 503 under the heaviest load "
        "(from /metrics; without its counters not judged)",
        fix=fixes.POOL_SIZE if measured else fixes.METRICS_MISSING,
    )


def error_rate(runs: list[LoadRun]) -> CheckResult:
    """The deployment's own 5xx over the load window (its counters see every client, not only
    ours), and the self-test's failed requests (which also count what never reached a worker)."""
    sent = sum(run.stats.requests for run in runs)
    failed = sum(run.stats.failures for run in runs)
    first, last = runs[0].before, runs[-1].after
    served = last.requests - first.requests
    server_errors = last.responses_5xx - first.responses_5xx
    measured = _has_counters(runs)
    client_rate = failed / sent if sent else 0.0
    server_rate = server_errors / served if served > 0 else 0.0
    return judge(
        Phase.FULL_STACK,
        "error-rate",
        passed=sent > 0 and client_rate < MAX_ERROR_RATE and server_rate < MAX_ERROR_RATE,
        warned=not measured,
        figures={
            "requests": sent,
            "failures": failed,
            "error_rate": round(client_rate, 6),
            "served": int(served) if measured else "not measured",
            "server_5xx": int(server_errors) if measured else "not measured",
            "server_5xx_rate": round(server_rate, 6) if measured else "not measured",
        },
        criterion="over the load window, the deployment's 5xx (gatekey_http_requests_total) "
        "< 0.1 % of what it served and the self-test's failed requests < 0.1 %",
        fix=fixes.ERRORS,
    )


@dataclass(frozen=True, slots=True)
class LeakFit:
    """Per worker, MB kept per 1,000 requests it served after warm-up (an even share of the
    deployment's requests); the points and requests per worker the fit rests on."""

    slopes: dict[str, float]
    growth_mb: float
    points: int
    requests_per_worker: float


def leak_fit(run: LoadRun) -> LeakFit:
    start = run.before.t_s + WARM_UP_FRACTION * (run.samples[-1].t_s - run.before.t_s)
    window = [s for s in run.samples if s.t_s >= start]
    if not window:
        return LeakFit({}, 0.0, 0, 0.0)
    workers = max(1, len(window[-1].rss_bytes))
    slopes: dict[str, float] = {}
    growth = 0.0
    for pid in window[-1].rss_bytes:
        points = [s for s in window if pid in s.rss_bytes]
        xs = [s.requests / 1000 / workers for s in points]
        slope = theil_sen_slope(xs, [s.rss_bytes[pid] / MB for s in points])
        slopes[pid] = round(slope, 3)
        growth = max(growth, slope * (xs[-1] - xs[0]))
    served = (window[-1].requests - window[0].requests) / workers
    return LeakFit(slopes, round(growth, 1), len(window), served)


def memory_leak(run: LoadRun) -> CheckResult:
    fit = leak_fit(run)
    worst = max(fit.slopes.values(), default=0.0)
    judged = bool(fit.slopes) and fit.points >= MIN_LEAK_POINTS
    judged = judged and fit.requests_per_worker >= LEAK_MIN_REQUESTS
    return judge(
        Phase.FULL_STACK,
        "memory-leak",
        passed=not (
            judged and worst > LEAK_MB_PER_1K_REQUESTS and fit.growth_mb > LEAK_MIN_GROWTH_MB
        ),
        warned=not judged,
        figures={
            "users": run.users,
            "worst_mb_per_1k_requests": worst,
            "growth_mb": fit.growth_mb,
            "samples": fit.points,
            "requests_per_worker": round(fit.requests_per_worker),
            "workers": len(fit.slopes),
        },
        criterion=(
            f"after a {WARM_UP_FRACTION:.0%} warm-up of the last step, resident memory grows ≤ "
            f"{LEAK_MB_PER_1K_REQUESTS} MB per 1,000 requests per worker or ≤ "
            f"{LEAK_MIN_GROWTH_MB:g} MB in all; judged from {LEAK_MIN_REQUESTS:,} requests per "
            f"worker and {MIN_LEAK_POINTS} samples"
        ),
        fix=fixes.MEMORY_LEAK if judged else "run a longer --duration: too few requests to judge",
    )
