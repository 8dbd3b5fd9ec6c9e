"""`selftest --soak 30m`: one load level held for the duration while every resource that could
leak is sampled every 10 s; after a warm-up, nothing may keep growing. The judge is pure."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import StatisticsError, linear_regression

import httpx
import psutil
from redis.asyncio import Redis
from redis.exceptions import RedisError

from service.redis.client import RedisClient, client_name, create_redis
from service.selftest import fixes
from service.selftest.context import Context
from service.selftest.load import LocustStats, run_locust
from service.selftest.load_checks import MAX_ERROR_RATE, MB
from service.selftest.load_keys import LOAD_KEYS, mint_load_keys
from service.selftest.model import CheckResult, Figure, Outcome, Phase, SoakSample
from service.selftest.sampling import RSS

SOAK_CHECK = "soak"
SOAK_USERS = 50
SAMPLE_EVERY_S = 10.0
# Memory: least-squares slope of each worker's RSS after the warm-up, per 10 minutes.
RSS_MB_PER_10_MIN = 1.0
# Counts (fds, connections, clients) climb when the fitted line rises by more than this over the
# judged window: a pool filling up settles within the warm-up, a leak keeps adding.
COUNT_GROWTH = 3.0
COUNT_GROWTH_FRACTION = 0.10
MIN_JUDGED_SAMPLES = 3
SERIES = ("rss_mb", "open_fds", "pg_connections", "redis_clients")
DEPLOYMENT = "deployment"  # the source of a deployment-wide series (per worker: its pid)


def warmup_s(duration_s: float) -> float:
    """A quarter of the soak, at most two minutes: pools, caches and allocator arenas fill."""
    return min(120.0, duration_s / 4)


def criterion(duration_s: float, pool_ceiling: int) -> str:
    return (
        f"after a {warmup_s(duration_s):.0f} s warm-up of {SOAK_USERS} users held for "
        f"{duration_s:.0f} s, sampled every {SAMPLE_EVERY_S:.0f} s: each worker's RSS "
        f"least-squares slope ≤ {RSS_MB_PER_10_MIN:g} MB per 10 min; open fds per worker "
        f"and Redis clients rise by ≤ max({COUNT_GROWTH:g}, {COUNT_GROWTH_FRACTION:.0%}) over "
        f"the judged window (fitted line), PostgreSQL connections too once above the "
        f"{pool_ceiling} the pools may open (workers × (pool + overflow)); errors < 0.1 %"
    )


@dataclass(frozen=True, slots=True)
class Growth:
    series: str
    source: str
    per_10_min: float  # fitted slope
    growth: float  # fitted rise over the judged window
    start: float  # fitted value where the window begins
    last: float  # the last sample

    def is_leak(self, pool_ceiling: int) -> bool:
        """A pool opens connections lazily up to its size, and overflow ones as load peaks come:
        PostgreSQL connections climbing below what the pools may open are not a leak."""
        if self.series == "rss_mb":
            return self.per_10_min > RSS_MB_PER_10_MIN
        if self.series == "pg_connections" and self.last <= pool_ceiling:
            return False
        return self.growth > max(COUNT_GROWTH, COUNT_GROWTH_FRACTION * self.start)


def growths(samples: list[SoakSample], warmup: float) -> list[Growth]:
    """Each series (per worker where it is per worker) fitted over its samples after `warmup`."""
    points: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for sample in samples:
        if sample.t_s >= warmup:
            points.setdefault((sample.series, sample.source), []).append((sample.t_s, sample.value))
    found = []
    for (series, source), xy in sorted(points.items()):
        if len(xy) < MIN_JUDGED_SAMPLES:
            continue  # a worker replaced late in the run: too few points to fit
        xs, ys = [x for x, _ in xy], [y for _, y in xy]
        try:
            slope, intercept = linear_regression(xs, ys)
        except StatisticsError:  # every sample at one instant
            continue
        span = xs[-1] - xs[0]
        start = intercept + slope * xs[0]
        found.append(Growth(series, source, slope * 600, slope * span, start, ys[-1]))
    return found


def soak_check(
    samples: list[SoakSample],
    stats: LocustStats,
    *,
    duration_s: float,
    started_s: float,
    pool_size: int,
) -> CheckResult:
    """NO-GO when any series keeps growing after the warm-up, or the load failed.
    `pool_size`: a worker's DATABASE_POOL_SIZE + DATABASE_POOL_MAX_OVERFLOW."""
    fitted = growths(samples, started_s + warmup_s(duration_s))
    workers = len({g.source for g in fitted if g.series == "rss_mb"}) or 1
    pool_ceiling = workers * pool_size
    leaks = [g for g in fitted if g.is_leak(pool_ceiling)]
    figures: dict[str, Figure] = {
        "requests": stats.requests,
        "rps": round(stats.rps, 1),
        "error_rate": round(stats.error_rate, 6),
        "samples": len({s.t_s for s in samples}),
    }
    for series in SERIES:
        of_series = [g for g in fitted if g.series == series]
        if of_series:
            worst = max(of_series, key=lambda g: g.per_10_min)
            figures[f"{series}_per_10min"] = round(worst.per_10_min, 3)
        else:
            figures[f"{series}_per_10min"] = "not measured"
    measured = any(g.series == "rss_mb" for g in fitted)
    failed = bool(leaks) or stats.error_rate >= MAX_ERROR_RATE or stats.requests == 0
    if leaks:
        figures["growing"] = " ".join(f"{g.series}@{g.source}" for g in leaks)
    outcome = Outcome.FAIL if failed else Outcome.PASS if measured else Outcome.WARN
    fix = _fix(leaks, stats) if failed else None if measured else fixes.SOAK_UNMEASURED
    return CheckResult(
        Phase.LOAD, SOAK_CHECK, outcome, figures, criterion(duration_s, pool_ceiling), fix
    )


def _fix(leaks: list[Growth], stats: LocustStats) -> str:
    if not leaks:
        return fixes.ERRORS
    kinds = {g.series for g in leaks}
    named = [fixes.SOAK_FIXES[kind] for kind in SERIES if kind in kinds]
    return "; ".join(named)


def open_fds(pid: str) -> int | None:
    """A worker's open file descriptors; None when it is not a process of this host."""
    try:
        return psutil.Process(int(pid)).num_fds()
    except (psutil.Error, ValueError):
        return None


async def redis_clients(redis: Redis, name: str) -> int:
    """The deployment's connections to Redis: `CLIENT LIST` entries carrying its client name,
    but for the one asking (the self-test's own client carries the name too)."""
    own, clients = await redis.client_id(), await redis.client_list()
    return sum(1 for c in clients if c.get("name") == name and str(c.get("id")) != str(own))


async def take_sample(ctx: Context, redis: RedisClient, t_s: float) -> list[SoakSample]:
    scrape = await ctx.deployment.scrape()
    samples = [
        SoakSample(t_s, "rss_mb", pid, round(rss / MB, 2))
        for pid, rss in scrape.by_label(RSS, "pid").items()
    ]
    for pid in scrape.by_label(RSS, "pid"):
        fds = open_fds(pid)
        if fds is not None:
            samples.append(SoakSample(t_s, "open_fds", pid, fds))
    db = await ctx.probe.activity()
    samples.append(SoakSample(t_s, "pg_connections", DEPLOYMENT, db.connections))
    if isinstance(redis, Redis):  # a Cluster's clients are spread over its nodes: not sampled
        with contextlib.suppress(RedisError):
            clients = await redis_clients(redis, client_name(ctx.settings))
            samples.append(SoakSample(t_s, "redis_clients", DEPLOYMENT, clients))
    return samples


async def run_soak(
    ctx: Context,
    duration_s: float,
    workdir: Path,
    *,
    started: float,
    progress: Callable[[str], None],
) -> tuple[CheckResult, list[SoakSample]]:
    """Hold `SOAK_USERS` users for `duration_s` over fresh keys, sampling meanwhile."""
    progress(f"soak: minting {LOAD_KEYS:,} keys")
    keys_file = await mint_load_keys(
        ctx.cli, LOAD_KEYS, workdir, name=ctx.keys.name_for("soak-rotation")
    )
    samples: list[SoakSample] = []
    soak_started = time.monotonic() - started
    redis = create_redis(ctx.settings, timeout=2.0)
    load = asyncio.create_task(
        run_locust(url=ctx.deployment.url, keys_file=keys_file, users=SOAK_USERS,
                   duration_s=duration_s, stop_after=None, workdir=workdir)
    )  # fmt: skip
    try:
        while not load.done():
            t_s = time.monotonic() - started
            # A sample lost to a saturated server is a gap in the series, not a finding.
            with contextlib.suppress(httpx.HTTPError, OSError):
                samples.extend(await take_sample(ctx, redis, t_s))
            progress(_progress_line(samples, t_s - soak_started, duration_s))
            await asyncio.wait([load], timeout=SAMPLE_EVERY_S)
        stats = load.result()
    finally:
        load.cancel()
        await redis.aclose()
    check = soak_check(
        samples,
        stats,
        duration_s=duration_s,
        started_s=soak_started,
        pool_size=ctx.settings.database_pool_size + ctx.settings.database_pool_max_overflow,
    )
    return check, samples


def _progress_line(samples: list[SoakSample], elapsed_s: float, duration_s: float) -> str:
    latest = max((s.t_s for s in samples), default=0.0)
    now = {(s.series, s.source): s.value for s in samples if s.t_s == latest}
    rss = " ".join(f"{v:.0f}" for (series, _), v in sorted(now.items()) if series == "rss_mb")
    phase = "warm-up" if elapsed_s < warmup_s(duration_s) else "judged"
    return (
        f"soak: {elapsed_s:.0f}/{duration_s:.0f} s ({phase}), RSS MB {rss or '?'}, "
        f"pg {now.get(('pg_connections', DEPLOYMENT), '?')}, "
        f"redis {now.get(('redis_clients', DEPLOYMENT), '?')}"
    )
