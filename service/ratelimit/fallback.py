"""What the Redis limiter answers while Redis is unreachable (`RATE_LIMIT_ON_REDIS_ERROR`)."""

from __future__ import annotations

from functools import partial

from service.config import RedisErrorPolicy
from service.ratelimit.breaker import CircuitBreaker
from service.ratelimit.decision import RateLimitDecision
from service.ratelimit.gcra import MICROS, to_decision
from service.ratelimit.limits import LimitSet
from service.ratelimit.memory import MemoryRateLimiter
from service.ratelimit.redis_limiter import Fallback


def make_fallback(
    policy: RedisErrorPolicy,
    *,
    worker_count: int,
    breaker: CircuitBreaker,
    local: MemoryRateLimiter | None = None,
) -> Fallback:
    """`local`: each process enforces its share of every limit of the key and of its owner
    (limit // workers, at least 1) in `local`, which the Redis limiter keeps seeded; credits are
    not enforced without Redis; `allow`: admit; `deny`: refuse until Redis is tried again (the
    API answers 503)."""
    if policy is RedisErrorPolicy.LOCAL:
        local = local or MemoryRateLimiter(divisor=worker_count)
        return partial(_local, local)
    if policy is RedisErrorPolicy.ALLOW:
        return _allow
    return partial(_deny, breaker)


def _local(
    local: MemoryRateLimiter, key_id: str, limits: LimitSet, cost: int, owner: str | None
) -> RateLimitDecision:
    return local.decide(key_id, limits, is_fallback=True, cost=cost, owner=owner)


def _allow(key_id: str, limits: LimitSet, cost: int, owner: str | None) -> RateLimitDecision:
    del key_id, cost, owner
    params = limits.params[0]
    return to_decision(
        params,
        True,
        params.limit,
        0,
        0,
        is_fallback=True,
        name=limits.limits[0].name,
        policy_header=limits.policy_header,
    )


def _deny(
    breaker: CircuitBreaker, key_id: str, limits: LimitSet, cost: int, owner: str | None
) -> RateLimitDecision:
    del key_id, cost, owner
    # Before the breaker opens (the first failures) there is no probe time yet: one cooldown.
    wait_us = int((breaker.seconds_until_probe() or breaker.cooldown_s) * MICROS)
    return to_decision(
        limits.params[0],
        False,
        0,
        wait_us,
        wait_us,
        is_fallback=True,
        name=limits.limits[0].name,
        policy_header=limits.policy_header,
    )
