"""GCRA arithmetic in integer microseconds, shared by the in-process limiter; gcra.lua mirrors it.

A policy of `limit` per `window_s` admits a burst of `limit`, then one request per emission
interval. Integers keep a burst exact: float drift could admit N+1 or refuse the N-th.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from service.ratelimit.decision import RateLimitDecision
from service.ratelimit.policy import RateLimitPolicy

MICROS = 1_000_000


@dataclass(frozen=True, slots=True)
class GcraParams:
    """A policy in GCRA terms: `tolerance_us` = `emission_us` x `limit` is the burst allowance."""

    limit: int
    window_s: int
    emission_us: int
    tolerance_us: int


@dataclass(frozen=True, slots=True)
class GcraOutcome:
    """One step: the verdict and the theoretical arrival time to store (unchanged when refused)."""

    allowed: bool
    tat_us: int
    remaining: int
    reset_us: int
    retry_after_us: int


@lru_cache(maxsize=4096)
def gcra_params(policy: RateLimitPolicy, divisor: int = 1) -> GcraParams:
    """`policy` (its limit divided by `divisor`, at least 1) in GCRA terms.

    The emission interval is rounded up to a whole microsecond, so the limiter never admits more
    than the policy over time; the burst stays exactly `limit` because the tolerance uses the
    same rounded interval.
    """
    limit = max(1, policy.limit // divisor)
    emission_us = max(1, -(-policy.window_s * MICROS // limit))
    return GcraParams(limit, policy.window_s, emission_us, emission_us * limit)


def gcra_step(tat_us: int | None, now_us: int, params: GcraParams) -> GcraOutcome:
    """Decide one request at `now_us` given the stored theoretical arrival time (None: unused)."""
    tat = now_us if tat_us is None or tat_us < now_us else tat_us
    new_tat = tat + params.emission_us
    allow_at = new_tat - params.tolerance_us
    if now_us < allow_at:
        return GcraOutcome(False, tat, 0, tat - now_us, allow_at - now_us)
    remaining = (now_us - allow_at) // params.emission_us
    return GcraOutcome(True, new_tat, remaining, new_tat - now_us, 0)


def to_decision(
    params: GcraParams,
    allowed: bool,
    remaining: int,
    reset_us: int,
    retry_after_us: int,
    *,
    is_fallback: bool = False,
) -> RateLimitDecision:
    """Build the public decision from GCRA figures (the script returns the same four numbers)."""
    return RateLimitDecision(
        allowed,
        params.limit,
        remaining,
        reset_us / MICROS,
        retry_after_us / MICROS,
        params.window_s,
        is_fallback,
    )
