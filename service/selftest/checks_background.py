"""Background work seen from outside: usage reaching PostgreSQL, the key-change feed, the breaker.

Each of these runs in every worker on its own, and nothing a client sees breaks when one stops:
the checks look at what the work is there to produce.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from service.selftest import fixes
from service.selftest.context import Context
from service.selftest.model import CheckResult, Phase, judge
from service.selftest.traffic import Call, Reply, Watch, burst, hammer, hammer_across, key_header

USAGE_REQUESTS = 60
# Beyond two flush intervals: a loaded two-core host may start a flush late by this much.
USAGE_MARGIN_S = 5.0
FLUSH = "gatekey_usage_flush_total"
CACHE = "gatekey_key_cache_requests_total"
DECISIONS = "gatekey_ratelimit_decisions_total"
FEED_DEADLINE_S = 1.0
# A second of requests past the bound (hundreds), or longer until 20 are in on a starved client.
_FEED_WATCH = Watch(late_after_s=FEED_DEADLINE_S, min_late=20, observe_s=2.0)
_FEED_STEADY_S = 2.0
# A fresh feed keeps a key cached in each worker: a few misses per worker at most (a worker
# the warm-up missed, a read that skipped a beat). A stale one re-reads it every 0.5 s.
_MISSES_PER_WORKER = 2


async def usage_accounted(ctx: Context) -> CheckResult:
    created = await ctx.key("usage")
    before = await ctx.deployment.scrape()
    call = Call("GET", "/v1/whoami", key_header(created.key))
    replies = await burst(ctx.deployment.url, [call] * USAGE_REQUESTS, concurrency=10)
    admitted = sum(1 for reply in replies if reply.status == 200)
    sent_at = time.monotonic()
    bound_s = 2 * ctx.settings.usage_flush_interval + USAGE_MARGIN_S
    stored = await ctx.probe.usage_total(created.id)
    while stored < admitted and time.monotonic() - sent_at < bound_s:
        await asyncio.sleep(0.25)
        stored = await ctx.probe.usage_total(created.id)
    waited_s = time.monotonic() - sent_at
    after = await ctx.deployment.scrape()
    flushes = after.total(FLUSH, result="ok") - before.total(FLUSH, result="ok")
    errors = after.total(FLUSH, result="error") - before.total(FLUSH, result="error")
    return judge(
        Phase.FULL_STACK,
        "usage-accounted",
        passed=admitted == USAGE_REQUESTS and stored == admitted and flushes > 0 and errors == 0,
        figures={
            "admitted": admitted,
            "in_postgresql": stored,
            "waited_s": round(waited_s, 2),
            "bound_s": round(bound_s, 2),
            "flushes_ok": flushes,
            "flushes_failed": errors,
        },
        criterion=f"{USAGE_REQUESTS} admitted requests of a fresh key are in api_key_usage, "
        "exactly, within 2 × USAGE_FLUSH_INTERVAL + 5 s; gatekey_usage_flush_total{ok} moved, "
        "{error} did not",
        fix=fixes.USAGE_ACCOUNTING,
    )


async def key_feed(ctx: Context) -> CheckResult:
    """A key used steadily stays cached (a fresh feed), and a revoke made by hand in SQL, which
    nothing announces, is refused by every worker within 1 s (the feed read it)."""
    created = await ctx.key("feed")
    call = Call("GET", "/v1/whoami", key_header(created.key))
    warm = await burst(ctx.deployment.url, [call] * 40, concurrency=8)
    workers = max(1, len(await ctx.deployment.worker_pids()))
    before = await ctx.deployment.scrape()
    steady = await _for(ctx, call, _FEED_STEADY_S)
    misses = (await ctx.deployment.scrape()).total(CACHE, outcome="miss") - before.total(
        CACHE, outcome="miss"
    )
    replies, revoked_at = await hammer_across(
        ctx.deployment.url, call, lambda: ctx.probe.revoke(created.id), _FEED_WATCH
    )
    late = [r for r in replies if r.sent_at >= revoked_at + FEED_DEADLINE_S]
    not_refused = sum(1 for r in late if r.status != 401)
    statuses = Counter(r.status for r in (*warm, *steady))
    return judge(
        Phase.FULL_STACK,
        "key-feed",
        passed=set(statuses) == {200}
        and misses <= _MISSES_PER_WORKER * workers
        and not_refused == 0,
        warned=len(late) < _FEED_WATCH.min_late,
        figures={
            "steady_requests": len(steady),
            "cache_misses": misses,
            "workers": workers,
            "requests_after_1s": len(late),
            "not_401_after_1s": not_refused,
        },
        criterion=f"a key used for {_FEED_STEADY_S:g} s misses the cache ≤ {_MISSES_PER_WORKER} "
        "times per worker; after a revoke by hand in SQL, every request sent ≥ 1 s later is 401 "
        f"(judged on ≥ {_FEED_WATCH.min_late} such requests, else warn)",
        fix=fixes.KEY_FEED,
    )


async def _for(ctx: Context, call: Call, seconds: float) -> list[Reply]:
    stop = asyncio.Event()
    task = asyncio.create_task(hammer(ctx.deployment.url, lambda: call, concurrency=2, stop=stop))
    await asyncio.sleep(seconds)
    stop.set()
    return await task


async def breaker_closed(ctx: Context) -> CheckResult:
    """With Redis up the breaker is closed: `/readyz` says Redis `ok` and no decision falls back
    (a breaker whose probe stopped stays open, and every decision after falls back)."""
    created = await ctx.key("load")
    before = await ctx.deployment.scrape()
    call = Call("GET", "/v1/whoami", key_header(created.key))
    replies = await burst(ctx.deployment.url, [call] * 40, concurrency=8)
    after = await ctx.deployment.scrape()
    ready = await ctx.deployment.client.get(f"{ctx.deployment.url}/readyz", timeout=5)
    redis = str((ready.json().get("checks") or {}).get("redis", "missing"))
    fallback = after.total(DECISIONS, decision="fallback") - before.total(
        DECISIONS, decision="fallback"
    )
    allowed = after.total(DECISIONS, decision="allowed") - before.total(
        DECISIONS, decision="allowed"
    )
    return judge(
        Phase.FULL_STACK,
        "breaker-closed",
        passed=redis == "ok" and fallback == 0 and allowed >= len(replies),
        figures={"readyz_redis": redis, "allowed": allowed, "fallback": fallback},
        criterion="/readyz reports Redis ok and 40 requests are decided by Redis "
        "(gatekey_ratelimit_decisions_total{allowed} +40, {fallback} +0)",
        fix=fixes.BREAKER,
    )
