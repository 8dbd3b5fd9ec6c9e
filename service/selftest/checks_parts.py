"""Each part alone: health, key refusal, limiter headers, workers, metrics."""

from __future__ import annotations

import asyncio
import time

from service.results import KeyCheckResult
from service.selftest import fixes
from service.selftest.context import Context
from service.selftest.model import CheckResult, Phase, judge
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


async def health(ctx: Context) -> CheckResult:
    client, url = ctx.deployment.client, ctx.deployment.url
    live, ready = await asyncio.gather(client.get(f"{url}/healthz"), client.get(f"{url}/readyz"))
    checks = ready.json().get("checks", {}) if ready.status_code in (200, 503) else {}
    return judge(
        Phase.PARTS,
        "health",
        passed=live.status_code == 200
        and ready.status_code == 200
        and checks.get("database") == "ok"
        and checks.get("redis") == "ok",
        figures={
            "healthz": live.status_code,
            "readyz": ready.status_code,
            "database": str(checks.get("database")),
            "redis": str(checks.get("redis")),
        },
        criterion="/healthz 200; /readyz 200 with database and redis ok",
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


async def workers(ctx: Context) -> CheckResult:
    pids = sorted(await ctx.deployment.worker_pids())
    expected = ctx.expected_workers
    return judge(
        Phase.PARTS,
        "workers",
        passed=bool(pids) and (expected is None or len(pids) == expected),
        figures={"workers": len(pids), "expected": expected or "any", "pids": " ".join(pids)},
        criterion="/metrics reports one resident-memory gauge per worker pid",
        fix=fixes.WORKERS,
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
