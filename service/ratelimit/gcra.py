"""GCRA arithmetic in integer microseconds, shared by the in-process limiter; gcra.lua mirrors
`check` step for step (the memory backend and the local fallback run this code, the Redis limiter
the script, and the unit tests hold both to the same answers).

A policy of `limit` per `window_s` admits a burst of `limit`, then one request per emission
interval. Integers keep a burst exact: float drift could admit N+1 or refuse the N-th. A request
of `cost` units spends `cost` emission intervals of every limit it is checked against, and only
when every enforced limit admits it: one refusing limit leaves all of them untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from service.ratelimit.decision import RateLimitDecision
from service.ratelimit.policy import RateLimitPolicy

MICROS = 1_000_000
NEVER = -1  # retry after: the cost exceeds a limit's burst, no wait makes it pass


@dataclass(frozen=True, slots=True)
class GcraParams:
    """A policy in GCRA terms: `tolerance_us` = `emission_us` x `limit` is the burst allowance."""

    limit: int
    window_s: int
    emission_us: int
    tolerance_us: int
    shadow: bool = False


@dataclass(frozen=True, slots=True)
class GcraOutcome:
    """One check: the verdict, the limit it describes (`binding`, an index), and the theoretical
    arrival time to store per limit (None: left as it is)."""

    allowed: bool
    binding: int
    remaining: int
    reset_us: int
    retry_after_us: int  # 0 when allowed, NEVER when no wait helps
    shadow_refused: bool
    tats_us: tuple[int | None, ...]


@lru_cache(maxsize=4096)
def gcra_params(policy: RateLimitPolicy, divisor: int = 1) -> GcraParams:
    """`policy` (its limit divided by `divisor`, at least 1) in GCRA terms.

    The emission interval is rounded up to a whole microsecond, so the limiter never admits more
    than the policy over time; the burst stays exactly `limit` because the tolerance uses the
    same rounded interval.
    """
    limit = max(1, policy.limit // divisor)
    emission_us = max(1, -(-policy.window_s * MICROS // limit))
    return GcraParams(limit, policy.window_s, emission_us, emission_us * limit, policy.shadow)


def check(
    tats_us: Sequence[int | None], now_us: int, limits: Sequence[GcraParams], cost: int = 1
) -> GcraOutcome:
    """Decide one request of `cost` units at `now_us` against every limit (`tats_us`: each
    one's stored theoretical arrival time, None when unused). Refused: the refusing enforced
    limit with the longest wait describes it. Admitted: the enforced limit with the least
    remaining relative to its size does."""
    new_tats: list[int | None] = []
    binding, remaining, reset, retry = 0, 0, 0, 0
    refused, shadow_refused, best = False, False, None
    for i, (stored, params) in enumerate(zip(tats_us, limits, strict=True)):
        tat = now_us if stored is None or stored < now_us else stored
        new_tat = tat + params.emission_us * cost
        allow_at = new_tat - params.tolerance_us
        if now_us < allow_at:
            new_tats.append(None)
            if params.shadow:
                shadow_refused = True
                continue
            wait = NEVER if cost > params.limit else allow_at - now_us
            if not refused or _longer(wait, retry):
                binding, remaining, reset, retry = i, 0, tat - now_us, wait
            refused = True
            continue
        new_tats.append(new_tat if cost > 0 else None)
        left = (now_us - allow_at) // params.emission_us
        # left / limit < best's, in integers (a limit set always has an enforced limit).
        if not params.shadow and (best is None or left * best[1] < best[0] * params.limit):
            best = (left, params.limit)
            if not refused:
                binding, remaining, reset = i, left, new_tat - now_us
    if refused:
        return GcraOutcome(False, binding, 0, reset, retry, shadow_refused, (None,) * len(limits))
    return GcraOutcome(True, binding, remaining, reset, 0, shadow_refused, tuple(new_tats))


def _longer(wait: int, other: int) -> bool:
    return other != NEVER and (wait == NEVER or wait > other)


def to_decision(
    params: GcraParams,
    allowed: bool,
    remaining: int,
    reset_us: int,
    retry_after_us: int,
    *,
    is_fallback: bool = False,
    name: str = "default",
    policy_header: str | None = None,
    shadow_limited: bool = False,
    usage_exceeded: bool = False,
    credits_remaining: int | None = None,
) -> RateLimitDecision:
    """Build the public decision from GCRA figures (the script returns the same numbers)."""
    return RateLimitDecision(
        allowed,
        params.limit,
        remaining,
        reset_us / MICROS,
        NEVER if retry_after_us == NEVER else retry_after_us / MICROS,
        params.window_s,
        is_fallback,
        name=name,
        policy_header=policy_header,
        shadow_limited=shadow_limited,
        usage_exceeded=usage_exceeded,
        credits_remaining=credits_remaining,
    )
