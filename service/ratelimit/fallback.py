"""What the Redis limiter answers while Redis is unreachable (`RATE_LIMIT_ON_REDIS_ERROR`)."""

from __future__ import annotations

from functools import partial

from service.config import RedisErrorPolicy
from service.ratelimit.breaker import CircuitBreaker
from service.ratelimit.decision import RateLimitDecision
from service.ratelimit.gcra import MICROS, gcra_params, to_decision
from service.ratelimit.memory import MemoryRateLimiter
from service.ratelimit.policy import RateLimitPolicy
from service.ratelimit.redis_limiter import Fallback


def make_fallback(
    policy: RedisErrorPolicy,
    *,
    worker_count: int,
    breaker: CircuitBreaker,
    local: MemoryRateLimiter | None = None,
) -> Fallback:
    """`local`: each process enforces its share of the limit (limit // workers, at least 1) in
    `local`, which the Redis limiter keeps seeded; `allow`: admit; `deny`: refuse until Redis is
    tried again (the API answers 503)."""
    if policy is RedisErrorPolicy.LOCAL:
        local = local or MemoryRateLimiter(divisor=worker_count)
        return partial(local.decide, is_fallback=True)
    if policy is RedisErrorPolicy.ALLOW:
        return _allow
    return partial(_deny, breaker)


def _allow(key_id: str, policy: RateLimitPolicy) -> RateLimitDecision:
    del key_id
    return to_decision(gcra_params(policy), True, policy.limit, 0, 0, is_fallback=True)


def _deny(breaker: CircuitBreaker, key_id: str, policy: RateLimitPolicy) -> RateLimitDecision:
    del key_id
    # Before the breaker opens (the first failures) there is no probe time yet: one cooldown.
    wait_us = int((breaker.seconds_until_probe() or breaker.cooldown_s) * MICROS)
    return to_decision(gcra_params(policy), False, 0, wait_us, wait_us, is_fallback=True)
