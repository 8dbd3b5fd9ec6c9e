"""Circuit breaker transitions, the three Redis-error policies, and the factory's choices."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from service.config import RateLimitBackend, RedisErrorPolicy, Settings
from service.ratelimit.breaker import CircuitBreaker
from service.ratelimit.deferred_usage import DeferredUsage
from service.ratelimit.events import LimiterEvents
from service.ratelimit.fallback import make_fallback
from service.ratelimit.limiter import create_limiter
from service.ratelimit.limits import single
from service.ratelimit.memory import MemoryRateLimiter
from service.ratelimit.policy import RateLimitPolicy
from service.ratelimit.redis_limiter import RedisRateLimiter
from service.redis.keyspace import RedisKeyspace

POLICY = RateLimitPolicy(100, 60)


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_probes_once_per_cooldown_and_closes_on_success() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(cooldown_s=0.5, clock=clock)
    assert (breaker.state, breaker.allow(), breaker.seconds_until_probe()) == ("closed", True, 0.0)

    assert breaker.record_failure() is True
    assert (breaker.state, breaker.allow()) == ("open", False)
    clock.now += 0.2
    assert breaker.seconds_until_probe() == pytest.approx(0.3)
    assert breaker.allow() is False

    clock.now += 0.3
    assert (breaker.allow(), breaker.state) == (True, "half_open")  # the probe
    assert breaker.allow() is False  # only one per cooldown

    assert breaker.record_failure() is False  # was not closed: re-opens quietly
    assert breaker.state == "open"
    clock.now += 0.49
    assert breaker.allow() is False
    clock.now += 0.01
    assert breaker.allow() is True
    assert breaker.record_success() is True
    assert (breaker.state, breaker.allow()) == ("closed", True)
    assert breaker.record_success() is False


def test_a_probe_that_never_reports_does_not_block_the_next_one() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(cooldown_s=1.0, clock=clock)
    breaker.record_failure()
    clock.now += 1.0
    assert breaker.allow() is True
    clock.now += 1.0
    assert breaker.allow() is True


def test_local_fallback_enforces_the_workers_share() -> None:
    fallback = make_fallback(
        RedisErrorPolicy.LOCAL, worker_count=4, breaker=CircuitBreaker(cooldown_s=1)
    )
    decisions = [fallback("k", single(POLICY), 1, None) for _ in range(60)]
    assert sum(d.allowed for d in decisions) == 25
    assert all(d.is_fallback and d.limit == 25 for d in decisions)


def test_allow_and_deny_fallbacks() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(cooldown_s=0.5, clock=clock)
    breaker.record_failure()
    clock.now += 0.25
    allow = make_fallback(RedisErrorPolicy.ALLOW, worker_count=2, breaker=breaker)(
        "k", single(POLICY), 1, None
    )
    deny = make_fallback(RedisErrorPolicy.DENY, worker_count=2, breaker=breaker)(
        "k", single(POLICY), 1, None
    )
    assert (allow.allowed, allow.remaining, allow.is_fallback) == (True, 100, True)
    assert (deny.allowed, deny.remaining, deny.is_fallback) == (False, 0, True)
    assert deny.retry_after_s == deny.reset_s == 0.25


async def test_open_breaker_decides_without_touching_redis() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(cooldown_s=0.5, clock=clock)
    breaker.record_failure()
    decisions: list[str] = []
    # Port 9 (discard) is never contacted: the open breaker answers first.
    limiter = RedisRateLimiter(
        Redis(host="127.0.0.1", port=9),
        timeout=0.05,
        breaker=breaker,
        fallback=make_fallback(RedisErrorPolicy.LOCAL, worker_count=2, breaker=breaker),
        on_decision=decisions.append,
    )
    results = [await limiter.hit("k", POLICY) for _ in range(60)]
    assert sum(d.allowed for d in results) == 50
    assert all(d.is_fallback for d in results)
    assert decisions == ["fallback"] * 60
    assert await limiter.health() == "degraded"
    await limiter.aclose()


async def test_factory_builds_the_configured_backend() -> None:
    memory = create_limiter(
        Settings(rate_limit_backend=RateLimitBackend.MEMORY), redis=None, worker_count=1
    )
    assert isinstance(memory, MemoryRateLimiter)
    with pytest.raises(ValueError, match="needs a Redis client"):
        create_limiter(Settings(), redis=None, worker_count=1)
    redis_limiter = create_limiter(Settings(), redis=Redis(port=9), worker_count=3)
    assert isinstance(redis_limiter, RedisRateLimiter)
    # The breaker is closed, but nothing answers on port 9: not healthy.
    assert await redis_limiter.health() == "degraded"


def test_breaker_opens_only_after_the_threshold_of_failures_in_a_row() -> None:
    breaker = CircuitBreaker(cooldown_s=0.5, failure_threshold=3, clock=FakeClock())
    assert (breaker.record_failure(), breaker.record_failure(), breaker.state) == (
        False,
        False,
        "closed",
    )
    breaker.record_success()  # a success in between starts the count again
    assert [breaker.record_failure() for _ in range(3)] == [False, False, True]
    assert breaker.state == "open"
    assert breaker.allow() is False


def test_local_fallback_continues_from_what_redis_last_said() -> None:
    clock = FakeClock()
    local = MemoryRateLimiter(divisor=2, clock=clock)
    # Redis said the key is full again in 45 s: 75 of its 100/minute used, so this worker's
    # share of 50 has 12 left (12.5 rounded down), not a fresh 50.
    local.observe(single(POLICY).limits[0].subject("k", None), 45_000_000)
    admitted = sum(local.decide("k", POLICY, is_fallback=True).allowed for _ in range(100))
    assert admitted == 12
    local.observe(single(POLICY).limits[0].subject("fresh", None), 0)
    assert sum(local.decide("fresh", POLICY, is_fallback=True).allowed for _ in range(100)) == 50


async def test_events_report_the_breaker_opening_and_usage_lost_at_shutdown() -> None:
    """Nothing listens on port 9: the first batch fails, the breaker opens, the fallback admits,
    and the admissions it held are reported lost when the limiter closes without Redis."""
    opened: list[bool] = []
    dropped: list[tuple[str, int]] = []
    round_trips: list[float] = []
    redis = Redis(host="127.0.0.1", port=9)
    breaker = CircuitBreaker(cooldown_s=60)
    events = LimiterEvents(
        round_trip=round_trips.append,
        breaker_open=opened.append,
        usage_dropped=lambda reason, count: dropped.append((reason, count)),
    )
    limiter = RedisRateLimiter(
        redis,
        timeout=0.05,
        breaker=breaker,
        fallback=make_fallback(RedisErrorPolicy.ALLOW, worker_count=1, breaker=breaker),
        deferred_usage=DeferredUsage(
            redis, RedisKeyspace(), ttl_s=60, on_dropped=events.usage_dropped
        ),
        events=events,
    )
    results = [await limiter.hit("k", POLICY) for _ in range(5)]
    assert [d.allowed for d in results] == [True] * 5
    assert (opened, round_trips) == ([True], [])
    await limiter.aclose()
    # The first hit's script was never sent (no connection), so all five were held, then lost.
    assert dropped == [("shutdown", 5)]
