"""GCRA arithmetic and the in-process limiter: exact bursts, remaining, retry-after, refill."""

from __future__ import annotations

import pytest

from service.ratelimit.gcra import NEVER, GcraOutcome, GcraParams, check, gcra_params
from service.ratelimit.limits import limit_set
from service.ratelimit.memory import MemoryRateLimiter
from service.ratelimit.policy import RateLimitPolicy

HUNDRED_PER_HOUR = RateLimitPolicy(100, 3600)


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Step:
    """One limit's check, as the single-limit tests read it."""

    def __init__(self, outcome: GcraOutcome, tat_us: int | None) -> None:
        self.allowed = outcome.allowed
        self.remaining = outcome.remaining
        self.reset_us = outcome.reset_us
        self.retry_after_us = outcome.retry_after_us
        self.tat_us = outcome.tats_us[0] if outcome.allowed else tat_us


def gcra_step(tat_us: int | None, now_us: int, params: GcraParams) -> Step:
    return Step(check([tat_us], now_us, [params]), tat_us)


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
        (RateLimitPolicy(5, 60, shadow=True), 1, GcraParams(5, 60, 12_000_000, 60_000_000, True)),
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


SECOND, DAY = RateLimitPolicy(3, 1), RateLimitPolicy(5, 86400)


def run(limits: list[GcraParams], costs: list[int], now_us: int = 10_000_000) -> list[GcraOutcome]:
    """Checks at one instant, each storing what it charged."""
    tats: list[int | None] = [None] * len(limits)
    outcomes = []
    for cost in costs:
        outcome = check(tats, now_us, limits, cost)
        if outcome.allowed:
            tats = [
                new if new is not None else old
                for new, old in zip(outcome.tats_us, tats, strict=True)
            ]
        outcomes.append(outcome)
    return outcomes


def test_the_tighter_limit_decides_and_a_refusal_charges_no_limit() -> None:
    second, day = gcra_params(SECOND), gcra_params(DAY)
    outcomes = run([second, day], [1] * 5)
    assert [o.allowed for o in outcomes] == [True, True, True, False, False]
    # Admitted: the limit with the least remaining relative to its size describes it.
    assert [(o.binding, o.remaining) for o in outcomes[:3]] == [(0, 2), (0, 1), (0, 0)]
    refused = outcomes[3]
    assert (refused.binding, refused.tats_us) == (0, (None, None))
    # A second later the second's limit is back; the day's counted only the 3 admitted.
    later = check([outcomes[2].tats_us[0], outcomes[2].tats_us[1]], 11_000_000, [second, day])
    assert (later.allowed, later.binding, later.remaining) == (True, 1, 1)


def test_the_refusal_with_the_longest_wait_is_reported() -> None:
    second, day = gcra_params(SECOND), gcra_params(RateLimitPolicy(2, 86400))
    outcomes = run([second, day], [1, 1, 1])
    refused = outcomes[2]
    assert (refused.allowed, refused.binding) == (False, 1)
    assert refused.retry_after_us == 43_200_000_000  # one day's emission interval


def test_cost_charges_units_and_zero_only_reports() -> None:
    limit = gcra_params(RateLimitPolicy(10, 60))
    outcomes = run([limit], [5, 0, 4, 0, 2, 1])
    assert [(o.allowed, o.remaining) for o in outcomes] == [
        (True, 5), (True, 5), (True, 1), (True, 1), (False, 0), (True, 0),
    ]  # fmt: skip
    assert outcomes[1].tats_us == (None,)  # a peek stores nothing


def test_a_cost_above_the_burst_never_passes() -> None:
    outcome = check([None], 10_000_000, [gcra_params(RateLimitPolicy(10, 60))], 11)
    assert (outcome.allowed, outcome.retry_after_us) == (False, NEVER)


def test_a_shadow_limit_is_counted_but_never_refuses() -> None:
    enforced = gcra_params(RateLimitPolicy(100, 60))
    shadow = gcra_params(RateLimitPolicy(3, 60, shadow=True))
    outcomes = run([enforced, shadow], [1] * 10)
    assert all(o.allowed for o in outcomes)
    assert [o.shadow_refused for o in outcomes] == [False] * 3 + [True] * 7
    # The shadow limit stores only what it admitted; the enforced one describes every request.
    assert {o.binding for o in outcomes} == {0}
    assert outcomes[-1].remaining == 90


async def test_memory_limiter_enforces_owner_limits_across_keys() -> None:
    limiter = MemoryRateLimiter(clock=FakeClock())
    limits = limit_set((RateLimitPolicy(10, 60),), (RateLimitPolicy(4, 60),))
    results = [await limiter.hit(key, limits, owner="acme") for key in ("a", "b") * 4]
    assert [d.allowed for d in results] == [True] * 4 + [False] * 4
    assert {d.name for d in results} == {"owner-minute"}
    assert results[0].policy_header == '"key-minute";q=10;w=60, "owner-minute";q=4;w=60'
