"""Pairs: a CLI-made key on the async endpoints, revocation on every worker, exact limits."""

from __future__ import annotations

from collections import Counter

from service.results import KeyCheckResult
from service.selftest import fixes
from service.selftest.context import EXACT_LIMIT, Context
from service.selftest.model import CheckResult, Phase, judge
from service.selftest.traffic import Call, Watch, burst, hammer_across, key_header

REVOKE_DEADLINE_S = 1.0
REVOKE_WATCH = Watch(late_after_s=REVOKE_DEADLINE_S, min_late=50, observe_s=1.5)


async def key_validates(ctx: Context) -> CheckResult:
    created = await ctx.key("load")
    whoami, auth, verify = await burst(
        ctx.deployment.url,
        [
            Call("GET", "/v1/whoami", key_header(created.key)),
            Call("GET", "/v1/auth", key_header(created.key)),
            Call("POST", "/v1/keys/verify", json={"key": created.key}),
        ],
        concurrency=3,
    )
    auth_id = auth.headers.get("X-Gatekey-Key-Id")
    return judge(
        Phase.PAIRS,
        "key-validates",
        passed=whoami.status == 200
        and whoami.data().get("id") == created.id
        and auth.status == 200
        and auth_id == created.id
        and verify.code() == KeyCheckResult.VALID,
        figures={
            "whoami": whoami.status,
            "auth": auth.status,
            "auth_key_id_matches": str(auth_id == created.id),
            "verify": str(verify.code()),
        },
        criterion="a key from `gatekey keys create` answers 200 on /v1/whoami (its id) and "
        "/v1/auth (X-Gatekey-Key-Id), VALID on /v1/keys/verify",
        fix=fixes.KEY_VALIDATION,
    )


async def revoke(ctx: Context) -> CheckResult:
    created = await ctx.key("revoke")
    call = Call("GET", "/v1/whoami", key_header(created.key))
    warm = await burst(ctx.deployment.url, [call] * 40, concurrency=8)
    replies, revoked_at = await hammer_across(
        ctx.deployment.url, call, lambda: ctx.cli.revoke_key(created.id), REVOKE_WATCH
    )
    late = [r for r in replies if r.sent_at >= revoked_at + REVOKE_DEADLINE_S]
    accepted_after = [
        r.sent_at - revoked_at for r in replies if r.sent_at >= revoked_at and r.status == 200
    ]
    not_refused = sum(1 for r in late if r.status != 401)
    return judge(
        Phase.PAIRS,
        "revoke-within-1s",
        passed=all(r.status == 200 for r in warm) and not_refused == 0,
        warned=len(late) < REVOKE_WATCH.min_late,
        figures={
            "requests_after_1s": len(late),
            "not_401_after_1s": not_refused,
            "last_200_after_revoke_s": round(max(accepted_after, default=0.0), 3),
        },
        criterion="every request sent ≥ 1 s after `gatekey keys revoke` returns is 401 "
        f"(judged on ≥ {REVOKE_WATCH.min_late} such requests, else warn)",
        fix=fixes.KEY_CACHE,
    )


async def exact_limit(ctx: Context) -> CheckResult:
    created = await ctx.key("exact")
    sent = 4 * EXACT_LIMIT
    replies = await burst(
        ctx.deployment.url,
        [Call("GET", "/v1/whoami", key_header(created.key))] * sent,
        concurrency=EXACT_LIMIT,
    )
    statuses = Counter(reply.status for reply in replies)
    return judge(
        Phase.PAIRS,
        "exact-limit",
        passed=statuses[200] == EXACT_LIMIT and statuses[429] == sent - EXACT_LIMIT,
        figures={
            "limit": f"{EXACT_LIMIT}/hour",
            "sent": sent,
            "admitted": statuses[200],
            "limited": statuses[429],
            "other": sent - statuses[200] - statuses[429],
        },
        criterion=f"a concurrent burst of {sent} admits exactly {EXACT_LIMIT} across all workers",
        fix=fixes.REDIS_BACKEND,
    )
