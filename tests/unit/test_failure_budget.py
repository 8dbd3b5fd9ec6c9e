"""Failed verifications per client address: counted by a limiter, refused past the budget
without another call, heard again after the retry time."""

from __future__ import annotations

import pytest

from service.errors import TooManyFailures
from service.ratelimit.credits import Credits
from service.ratelimit.decision import RateLimitDecision
from service.ratelimit.failures import FailureBudget
from service.ratelimit.limits import LimitSet
from service.ratelimit.memory import MemoryRateLimiter
from service.ratelimit.policy import RateLimitPolicy, parse_rate_limit
from service.results import KeyCheckResult


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingLimiter:
    """The in-process limiter, counting the hits it is asked."""

    def __init__(self, clock: Clock) -> None:
        self.memory = MemoryRateLimiter(clock=clock)
        self.hits: list[str] = []

    async def hit(
        self,
        key_id: str,
        limits: LimitSet | RateLimitPolicy,
        *,
        cost: int = 1,
        owner: str | None = None,
        credits: Credits | None = None,
    ) -> RateLimitDecision:
        self.hits.append(key_id)
        return self.memory.decide(key_id, limits, is_fallback=False, cost=cost, owner=owner)

    async def health(self) -> str:
        return "ok"

    async def aclose(self) -> None:
        return None


def _budget() -> tuple[FailureBudget, CountingLimiter, Clock]:
    clock = Clock()
    limiter = CountingLimiter(clock)
    return FailureBudget(limiter, parse_rate_limit("3/minute"), clock=clock), limiter, clock


async def test_past_the_budget_an_address_is_refused_without_a_call() -> None:
    budget, limiter, clock = _budget()
    for _ in range(3):
        budget.check("10.0.0.1")
        await budget.spend("10.0.0.1", KeyCheckResult.NOT_FOUND)
    with pytest.raises(TooManyFailures) as caught:
        await budget.spend("10.0.0.1", KeyCheckResult.NOT_FOUND)
    assert caught.value.retry_after_s == pytest.approx(20.0)
    with pytest.raises(TooManyFailures):
        budget.check("10.0.0.1")
    budget.check("10.0.0.2")  # another address is not affected
    assert limiter.hits == ["client:10.0.0.1"] * 4
    clock.now += 20.0
    budget.check("10.0.0.1")  # heard again; one more failure is within the refilled budget
    await budget.spend("10.0.0.1", KeyCheckResult.NOT_FOUND)


async def test_only_failures_that_cost_a_lookup_are_counted() -> None:
    budget, limiter, _ = _budget()
    others = (KeyCheckResult.MALFORMED, KeyCheckResult.REVOKED, KeyCheckResult.EXPIRED)
    for result in others * 5:
        await budget.spend("10.0.0.1", result)
    await budget.spend("10.0.0.1", KeyCheckResult.NOT_FOUND)
    assert limiter.hits == ["client:10.0.0.1"]
