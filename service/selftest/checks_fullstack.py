"""Full stack: the migration chain on a scratch database, and metric accuracy."""

from __future__ import annotations

import asyncio
import time

from service.selftest import fixes
from service.selftest.context import Context
from service.selftest.dbprobe import with_database
from service.selftest.model import CheckResult, Phase, judge
from service.selftest.sampling import REQUESTS
from service.selftest.traffic import Call, burst, key_header

MIGRATION_CHAIN = (
    ("db", "upgrade"),
    ("db", "downgrade", "base"),
    ("db", "upgrade"),
    ("db", "check"),
)
ACCURACY_REQUESTS = 600
# Counters are written as the response goes out; give the last ones a moment to land.
_ACCURACY_SETTLE_S = 2.0


async def migration_chain(ctx: Context) -> CheckResult:
    steps: list[str] = []
    failure = ""
    async with ctx.probe.scratch_database() as name:
        url = with_database(ctx.settings.database_url, name)
        for args in MIGRATION_CHAIN:
            result = await ctx.cli.run(*args, DATABASE_URL=url)
            steps.append(f"{' '.join(args[1:])}:{'ok' if result.returncode == 0 else 'failed'}")
            if result.returncode != 0:
                failure = result.last_error_line
                break
    return judge(
        Phase.FULL_STACK,
        "migration-chain",
        passed=not failure,
        figures={"steps": " ".join(steps), **({"error": failure[:200]} if failure else {})},
        criterion="on an empty scratch database: upgrade, downgrade base, upgrade, check",
        fix=fixes.MIGRATIONS,
    )


def _accuracy_calls(key: str) -> list[Call]:
    """A mix of answers (200, 401, verify results) that all count as served requests."""
    kinds = [
        Call("GET", "/v1/whoami", key_header(key)),
        Call("GET", "/v1/whoami", key_header("gk_malformed")),
        Call("POST", "/v1/keys/verify", json={"key": key}),
        Call("GET", "/healthz"),
    ]
    return [kinds[i % len(kinds)] for i in range(ACCURACY_REQUESTS)]


async def metric_accuracy(ctx: Context) -> CheckResult:
    key = (await ctx.key("load")).key
    before = (await ctx.deployment.scrape()).total(REQUESTS)
    await burst(ctx.deployment.url, _accuracy_calls(key), concurrency=20)
    deadline = time.monotonic() + _ACCURACY_SETTLE_S
    while True:
        counted = (await ctx.deployment.scrape()).total(REQUESTS) - before
        if counted == ACCURACY_REQUESTS or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    return judge(
        Phase.FULL_STACK,
        "metric-accuracy",
        passed=counted == ACCURACY_REQUESTS,
        figures={"sent": ACCURACY_REQUESTS, "counted": int(counted)},
        criterion="sum of gatekey_http_requests_total grows by exactly the requests sent",
        fix=fixes.METRICS_MULTIPROCESS,
    )
