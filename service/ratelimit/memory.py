"""In-process GCRA limiter: the `memory` backend, and the `local` fallback while Redis is down."""

from __future__ import annotations

import time
from collections.abc import Callable

from service.ratelimit.credits import Credits
from service.ratelimit.decision import RateLimitDecision
from service.ratelimit.gcra import MICROS, check, gcra_params, to_decision
from service.ratelimit.limits import LimitSet, single
from service.ratelimit.policy import RateLimitPolicy

_FIRST_SWEEP_AT = 10_000


class MemoryRateLimiter:
    """Exact within one process; `divisor` shares each limit among that many processes. Every
    limit of a key is enforced, its owner's too (per owner); credits are not (see `fallback`)."""

    def __init__(
        self,
        *,
        divisor: int = 1,
        clock: Callable[[], float] = time.monotonic,
        on_decision: Callable[[str], None] | None = None,
    ) -> None:
        self._divisor = max(1, divisor)
        self._clock = clock
        self._on_decision = on_decision
        self._tats: dict[str, int] = {}
        self._sweep_at = _FIRST_SWEEP_AT

    def decide(
        self,
        key_id: str,
        limits: LimitSet | RateLimitPolicy,
        *,
        is_fallback: bool,
        cost: int = 1,
        owner: str | None = None,
    ) -> RateLimitDecision:
        """One check, synchronously (no I/O), so the Redis limiter can fall back on it inline."""
        if isinstance(limits, RateLimitPolicy):
            limits = single(limits)
        params = [gcra_params(limit.policy, self._divisor) for limit in limits.limits]
        subjects = [limit.subject(key_id, owner) for limit in limits.limits]
        now_us = int(self._clock() * MICROS)
        outcome = check([self._tats.get(s) for s in subjects], now_us, params, cost)
        if outcome.allowed:
            for subject, tat in zip(subjects, outcome.tats_us, strict=True):
                if tat is not None:
                    self._tats[subject] = tat
            if len(self._tats) >= self._sweep_at:
                self._sweep(now_us)
        return to_decision(
            params[outcome.binding],
            outcome.allowed,
            outcome.remaining,
            outcome.reset_us,
            outcome.retry_after_us,
            is_fallback=is_fallback,
            name=limits.limits[outcome.binding].name,
            policy_header=limits.policy_header,
            shadow_limited=outcome.shadow_refused,
        )

    def observe(self, subject: str, reset_us: int) -> None:
        """Start from what Redis last said of this counter: full again in `reset_us` microseconds.

        The same time-until-full means the same fraction of the quota used, so this process's
        share continues from Redis's count instead of a fresh, full share when Redis fails.
        """
        tat_us = int(self._clock() * MICROS) + reset_us
        if tat_us > self._tats.get(subject, 0):
            self._tats[subject] = tat_us

    async def hit(
        self,
        key_id: str,
        limits: LimitSet | RateLimitPolicy,
        *,
        cost: int = 1,
        owner: str | None = None,
        credits: Credits | None = None,
    ) -> RateLimitDecision:
        """As the Redis limiter's, but credits are not enforced (one process holds no count
        every process shares)."""
        del credits
        decision = self.decide(key_id, limits, is_fallback=False, cost=cost, owner=owner)
        if self._on_decision is not None:
            self._on_decision("allowed" if decision.allowed else "limited")
            if decision.shadow_limited:
                self._on_decision("shadow_limited")
        return decision

    async def health(self) -> str:
        return "ok"

    async def aclose(self) -> None:
        self._tats.clear()

    def _sweep(self, now_us: int) -> None:
        # A key whose arrival time has passed holds its full quota: forgetting it changes nothing.
        # Sweeping only when the table doubles keeps the cost amortised O(1) per hit.
        self._tats = {key: tat for key, tat in self._tats.items() if tat > now_us}
        self._sweep_at = max(_FIRST_SWEEP_AT, 2 * len(self._tats))
