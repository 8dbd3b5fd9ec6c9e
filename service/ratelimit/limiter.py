"""The limiter interface the app codes against, and the factory that builds it from settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from service.config import RateLimitBackend, RedisErrorPolicy, Settings
from service.ratelimit.breaker import CircuitBreaker
from service.ratelimit.credit_seed import CreditStates
from service.ratelimit.credits import Credits
from service.ratelimit.decision import RateLimitDecision
from service.ratelimit.deferred_usage import DeferredUsage
from service.ratelimit.events import LimiterEvents
from service.ratelimit.fallback import make_fallback
from service.ratelimit.limits import LimitSet
from service.ratelimit.memory import MemoryRateLimiter
from service.ratelimit.policy import RateLimitPolicy
from service.ratelimit.redis_limiter import USAGE_TTL_S, RedisRateLimiter
from service.redis.client import RedisClient
from service.redis.keyspace import RedisKeyspace

# How long an open breaker answers without Redis before one call probes it again.
BREAKER_COOLDOWN_S = 0.5
# Failed round trips in a row before the breaker opens (a hung Redis costs each ~2 x timeout).
BREAKER_FAILURE_THRESHOLD = 3


class RateLimiter(Protocol):
    async def hit(
        self,
        key_id: str,
        limits: LimitSet | RateLimitPolicy,
        *,
        cost: int = 1,
        owner: str | None = None,
        credits: Credits | None = None,
    ) -> RateLimitDecision:
        """Count one request of `key_id` of `cost` units against every limit in `limits` (a
        policy: that one alone) and the key's `credits`, and say whether it is admitted."""
        ...

    async def health(self) -> str:
        """`ok`, or `degraded` while decisions are made (or would be made) without Redis."""
        ...

    async def aclose(self) -> None: ...


def create_limiter(
    settings: Settings,
    *,
    redis: RedisClient | None,
    worker_count: int,
    on_decision: Callable[[str], None] | None = None,
    keyspace: RedisKeyspace | None = None,
    events: LimiterEvents | None = None,
    credit_states: CreditStates | None = None,
) -> RateLimiter:
    """The limiter `RATE_LIMIT_BACKEND` names; `on_decision` gets allowed|limited|fallback
    (and shadow_limited besides, when a shadow limit would have refused),
    `events` the Redis limiter's round trips, breaker changes and dropped usage."""
    if settings.rate_limit_backend is RateLimitBackend.MEMORY:
        return MemoryRateLimiter(on_decision=on_decision)
    if redis is None:
        raise ValueError("RATE_LIMIT_BACKEND=redis needs a Redis client")
    breaker = CircuitBreaker(
        cooldown_s=BREAKER_COOLDOWN_S, failure_threshold=BREAKER_FAILURE_THRESHOLD
    )
    policy = settings.rate_limit_on_redis_error
    local = MemoryRateLimiter(divisor=worker_count)
    keyspace = keyspace or RedisKeyspace()
    events = events or LimiterEvents()
    return RedisRateLimiter(
        redis,
        timeout=settings.redis_timeout,
        breaker=breaker,
        fallback=make_fallback(policy, worker_count=worker_count, breaker=breaker, local=local),
        on_decision=on_decision,
        keyspace=keyspace,
        observe=local.observe if policy is RedisErrorPolicy.LOCAL else None,
        deferred_usage=DeferredUsage(
            redis, keyspace, ttl_s=USAGE_TTL_S, on_dropped=events.usage_dropped
        ),
        events=events,
        credit_states=credit_states,
    )


def create_failure_limiter(
    settings: Settings, *, redis: RedisClient | None, worker_count: int, keyspace: RedisKeyspace
) -> RateLimiter:
    """The limiter of failed verifications per client address: the same GCRA script, without
    usage; while Redis is away each process keeps its share, whatever the key policy says."""
    if settings.rate_limit_backend is RateLimitBackend.MEMORY or redis is None:
        return MemoryRateLimiter()
    breaker = CircuitBreaker(
        cooldown_s=BREAKER_COOLDOWN_S, failure_threshold=BREAKER_FAILURE_THRESHOLD
    )
    local = MemoryRateLimiter(divisor=worker_count)
    return RedisRateLimiter(
        redis,
        timeout=settings.redis_timeout,
        breaker=breaker,
        fallback=make_fallback(
            RedisErrorPolicy.LOCAL, worker_count=worker_count, breaker=breaker, local=local
        ),
        keyspace=keyspace,
        records_usage=False,
    )
