"""GCRA arithmetic and the in-process limiter: exact bursts, remaining, retry-after, refill."""

from __future__ import annotations

import pytest

from service.ratelimit.gcra import GcraParams, gcra_params, gcra_step
from service.ratelimit.memory import MemoryRateLimiter
from service.ratelimit.policy import RateLimitPolicy

HUNDRED_PER_HOUR = RateLimitPolicy(100, 3600)


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("policy", "divisor", "expected"),
    [
        (HUNDRED_PER_HOUR, 1, GcraParams(100, 3600, 36_000_000, 3_600_000_000)),
        (RateLimitPolicy(1000, 60), 1, GcraParams(1000, 60, 60_000, 60_000_000)),
        # 1e6 / 7 = 142857.14: rounded up, so never faster than the policy; burst still 7.
        (RateLimitPolicy(7, 1), 1, GcraParams(7, 1, 142_858, 1_000_006)),
        (HUNDRED_PER_HOUR, 4, GcraParams(25, 3600, 144_000_000, 3_600_000_000)),
        (RateLimitPolicy(3, 60), 8, GcraParams(1, 60, 60_000_000, 60_000_000)),
        (RateLimitPolicy(5_000_000, 1), 1, GcraParams(5_000_000, 1, 1, 5_000_000)),
    ],
)
def test_params(policy: RateLimitPolicy, divisor: int, expected: GcraParams) -> None:
    assert gcra_params(policy, divisor) == expected


def test_burst_admits_exactly_the_limit_with_remaining_dropping_by_one() -> None:
    params = gcra_params(HUNDRED_PER_HOUR)
    now, tat = 5_000_000_000, None
    remaining, allowed = [], 0
    for _ in range(300):
        outcome = gcra_step(tat, now, params)
        if outcome.allowed:
            allowed += 1
            remaining.append(outcome.remaining)
            tat = outcome.tat_us
    assert allowed == 100
    assert remaining == list(range(99, -1, -1))


def test_refused_hit_reports_retry_after_and_reset_and_keeps_state() -> None:
    params = gcra_params(RateLimitPolicy(2, 60))
    now = 10_000_000
    tat = gcra_step(None, now, params).tat_us
    tat = gcra_step(tat, now, params).tat_us
    refused = gcra_step(tat, now + 1_000_000, params)
    assert (refused.allowed, refused.remaining) == (False, 0)
    assert refused.retry_after_us == 29_000_000  # one emission (30 s) after the burst, less 1 s
    assert refused.reset_us == 59_000_000
    assert refused.tat_us == tat


def test_one_request_comes_back_per_emission_interval() -> None:
    params = gcra_params(RateLimitPolicy(2, 60))
    now = 10_000_000
    tat = gcra_step(gcra_step(None, now, params).tat_us, now, params).tat_us
    assert not gcra_step(tat, now + 29_999_999, params).allowed
    back = gcra_step(tat, now + 30_000_000, params)
    assert (back.allowed, back.remaining, back.reset_us) == (True, 0, 60_000_000)
    assert not gcra_step(back.tat_us, now + 30_000_000, params).allowed


async def test_memory_limiter_is_exact_and_refills_with_the_clock() -> None:
    clock = FakeClock()
    decisions: list[str] = []
    limiter = MemoryRateLimiter(clock=clock, on_decision=decisions.append)
    results = [await limiter.hit("k", HUNDRED_PER_HOUR) for _ in range(250)]
    admitted = [d for d in results if d.allowed]
    assert len(admitted) == 100
    assert [d.remaining for d in admitted] == list(range(99, -1, -1))
    assert decisions.count("allowed") == 100
    assert decisions.count("limited") == 150
    refused = results[-1]
    assert refused.retry_after_s == 36.0
    assert refused.reset_s == 3600.0
    assert (refused.limit, refused.window_s, refused.is_fallback) == (100, 3600, False)
    clock.now += 72.0
    again = [await limiter.hit("k", HUNDRED_PER_HOUR) for _ in range(5)]
    assert [d.allowed for d in again] == [True, True, False, False, False]
    assert (await limiter.hit("other", HUNDRED_PER_HOUR)).remaining == 99
    assert await limiter.health() == "ok"


@pytest.mark.parametrize(("limit", "workers", "admitted"), [(100, 4, 25), (10, 3, 3), (3, 8, 1)])
def test_divisor_shares_the_limit_among_workers(limit: int, workers: int, admitted: int) -> None:
    limiter = MemoryRateLimiter(divisor=workers, clock=FakeClock())
    policy = RateLimitPolicy(limit, 60)
    decisions = [limiter.decide("k", policy, is_fallback=True) for _ in range(limit * 2)]
    assert sum(d.allowed for d in decisions) == admitted
    assert {d.limit for d in decisions} == {admitted}
    assert all(d.is_fallback for d in decisions)


def test_sweep_forgets_only_keys_whose_quota_is_back() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock)
    busy = RateLimitPolicy(1, 3600)
    assert limiter.decide("busy", busy, is_fallback=False).allowed
    for i in range(10_000):
        limiter.decide(f"idle-{i}", RateLimitPolicy(10, 1), is_fallback=False)
    clock.now += 2.0
    for i in range(10_000):  # crosses the next sweep threshold with 10,000 expired entries
        limiter.decide(f"new-{i}", RateLimitPolicy(10, 1), is_fallback=False)
    assert not limiter.decide("busy", busy, is_fallback=False).allowed
    assert len(limiter._tats) < 20_000
