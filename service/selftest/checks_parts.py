"""Each part alone: health, key refusal, limiter headers, workers, metrics."""

from __future__ import annotations

import asyncio
import time

import httpx

from service.results import KeyCheckResult
from service.selftest import fixes
from service.selftest.context import Context
from service.selftest.model import CheckResult, Figure, Phase, judge
from service.selftest.traffic import Call, in_turn, key_header

REQUIRED_METRICS = (
    "gatekey_http_requests_total",
    "gatekey_http_request_duration_seconds",
    "gatekey_db_pool_size",
    "gatekey_db_pool_checked_out",
    "gatekey_db_pool_overflow",
    "gatekey_db_pool_wait_seconds",
    "gatekey_db_pool_timeouts_total",
    "gatekey_key_verifications_total",
    "gatekey_key_cache_requests_total",
    "gatekey_ratelimit_decisions_total",
    "gatekey_worker_resident_memory_bytes",
    "gatekey_worker_cpu_seconds",
    "gatekey_usage_flush_total",
    "gatekey_usage_pending",
)
# As long as uvicorn's supervisor gives a worker to answer its first health check: a worker
# replaced during start-up reports within it.
WORKERS_SETTLE_S = 30.0
_READY_WAIT_S = 5.0


async def health(ctx: Context) -> CheckResult:
    """`/readyz` is read again for up to `_READY_WAIT_S` until it says ok: readiness meant one
    worker answered, and a worker that has just started may still be opening its first
    database connection on a busy host (its 1 s probe says `unavailable` meanwhile)."""
    client, url = ctx.deployment.client, ctx.deployment.url
    deadline = time.monotonic() + _READY_WAIT_S
    while True:
        live, ready = await asyncio.gather(
            client.get(f"{url}/healthz"), client.get(f"{url}/readyz")
        )
        checks = ready.json().get("checks", {}) if ready.status_code in (200, 503) else {}
        passed = (
            live.status_code == 200
            and ready.status_code == 200
            and checks.get("database") == "ok"
            and checks.get("redis") == "ok"
        )
        if passed or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.25)
    return judge(
        Phase.PARTS,
        "health",
        passed=passed,
        figures={
            "healthz": live.status_code,
            "readyz": ready.status_code,
            "database": str(checks.get("database")),
            "redis": str(checks.get("redis")),
        },
        criterion="/healthz 200; /readyz 200 with database and redis ok "
        f"(re-read for up to {_READY_WAIT_S:g} s)",
        fix=fixes.HEALTH,
    )


async def keys(ctx: Context) -> CheckResult:
    key = (await ctx.key("load")).key
    malformed, missing, bearer = await in_turn(
        ctx.deployment.url,
        [
            Call("GET", "/v1/whoami", key_header(key[:-3] + "zzz")),
            Call("GET", "/v1/whoami"),
            Call("GET", "/v1/whoami", {"Authorization": f"Bearer {key}"}),
        ],
    )
    return judge(
        Phase.PARTS,
        "keys",
        passed=(malformed.status, malformed.code(), missing.status, bearer.status)
        == (401, KeyCheckResult.MALFORMED, 401, 200),
        figures={
            "bad_checksum": f"{malformed.status} {malformed.code()}",
            "no_key": missing.status,
            "bearer": bearer.status,
        },
        criterion="a key with a bad checksum is 401 MALFORMED, none is 401, Bearer works",
        fix=fixes.KEY_VALIDATION,
    )


async def limiter(ctx: Context) -> CheckResult:
    key = (await ctx.key("limiter")).key
    replies = await in_turn(ctx.deployment.url, [Call("GET", "/v1/whoami", key_header(key))] * 4)
    statuses = [reply.status for reply in replies]
    remaining = [reply.headers.get("RateLimit-Remaining", "-") for reply in replies[:3]]
    last = replies[-1]
    headers_ok = all("RateLimit-Policy" in r.headers and "RateLimit" in r.headers for r in replies)
    return judge(
        Phase.PARTS,
        "limiter",
        passed=statuses == [200, 200, 200, 429]
        and remaining == ["2", "1", "0"]
        and "Retry-After" in last.headers
        and last.code() == KeyCheckResult.RATE_LIMITED
        and headers_ok,
        figures={
            "statuses": " ".join(map(str, statuses)),
            "remaining": " ".join(remaining),
            "retry_after": last.headers.get("Retry-After", "-"),
            "code": str(last.code()),
        },
        criterion="a 3/minute key: 200, 200, 200 then 429 RATE_LIMITED with Retry-After; "
        "RateLimit-Remaining 2, 1, 0 and RateLimit / RateLimit-Policy on every answer",
        fix=fixes.LIMIT_RESPONSES,
    )


async def _reported_workers(ctx: Context) -> set[str]:
    """Pids with a resident-memory gauge; a scrape that fails (a worker still creating its
    metric files) reports none, which the deadline below absorbs."""
    try:
        return await ctx.deployment.worker_pids()
    except (httpx.HTTPError, ValueError):
        return set()


async def workers(ctx: Context) -> CheckResult:
    """Waits until the workers the deployment runs all report, or `WORKERS_SETTLE_S` passes:
    `/readyz` answered from one worker says nothing of the others, which may still be importing,
    or starting again after their supervisor replaced one that died during start-up."""
    expected = ctx.expected_workers
    processes = ctx.deployment.local_worker_pids
    deadline = time.monotonic() + WORKERS_SETTLE_S
    while True:
        pids = await _reported_workers(ctx)
        running = processes() if processes else None
        settled = bool(pids) and (expected is None or len(pids) == expected)
        if running is not None:
            settled = settled and pids == running
        if settled or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.25)
    figures: dict[str, Figure] = {
        "workers": len(pids),
        "expected": expected or "not known",
        "pids": " ".join(sorted(pids)),
    }
    if running is not None:
        figures["processes"] = " ".join(sorted(running))
    return judge(
        Phase.PARTS,
        "workers",
        passed=settled,
        warned=expected is None,
        figures=figures,
        criterion="/metrics reports one resident-memory gauge per worker: as many as the "
        "deployment runs (--workers, or the count the self-test started), the server's own "
        "worker processes when it started them; without a known count, not judged",
        fix=fixes.WORKERS if expected is not None else "give --workers N to judge the count",
    )


async def metrics(ctx: Context) -> CheckResult:
    key = (await ctx.key("load")).key
    await in_turn(ctx.deployment.url, [Call("GET", "/v1/whoami", key_header(key))])
    # Labelled counters appear once first incremented; the usage flush runs on its own interval.
    deadline = time.monotonic() + ctx.settings.usage_flush_interval + 1
    while True:
        names = (await ctx.deployment.scrape()).names()
        missing = [
            m
            for m in REQUIRED_METRICS
            if m not in names and not any(n.startswith(f"{m}_") for n in names)
        ]
        if not missing or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.25)
    return judge(
        Phase.PARTS,
        "metrics",
        passed=not missing,
        figures={"required": len(REQUIRED_METRICS), "missing": " ".join(missing) or "none"},
        criterion="/metrics exposes every metric gatekey documents",
        fix=fixes.METRICS_MISSING,
    )
