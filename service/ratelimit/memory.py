"""In-process GCRA limiter: the `memory` backend, and the `local` fallback while Redis is down."""

from __future__ import annotations

import time
from collections.abc import Callable

from service.ratelimit.decision import RateLimitDecision
from service.ratelimit.gcra import MICROS, gcra_params, gcra_step, to_decision
from service.ratelimit.policy import RateLimitPolicy

_FIRST_SWEEP_AT = 10_000


class MemoryRateLimiter:
    """Exact within one process; `divisor` shares a key's limit among that many processes."""

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
        self, key_id: str, policy: RateLimitPolicy, *, is_fallback: bool
    ) -> RateLimitDecision:
        """One hit, synchronously (no I/O), so the Redis limiter can fall back on it inline."""
        params = gcra_params(policy, self._divisor)
        now_us = int(self._clock() * MICROS)
        outcome = gcra_step(self._tats.get(key_id), now_us, params)
        if outcome.allowed:
            self._tats[key_id] = outcome.tat_us
            if len(self._tats) >= self._sweep_at:
                self._sweep(now_us)
        return to_decision(
            params,
            outcome.allowed,
            outcome.remaining,
            outcome.reset_us,
            outcome.retry_after_us,
            is_fallback=is_fallback,
        )

    def observe(self, key_id: str, reset_us: int) -> None:
        """Start from what Redis last said of this key: full again in `reset_us` microseconds.

        The same time-until-full means the same fraction of the quota used, so this process's
        share continues from Redis's count instead of a fresh, full share when Redis fails.
        """
        tat_us = int(self._clock() * MICROS) + reset_us
        if tat_us > self._tats.get(key_id, 0):
            self._tats[key_id] = tat_us

    async def hit(self, key_id: str, policy: RateLimitPolicy) -> RateLimitDecision:
        decision = self.decide(key_id, policy, is_fallback=False)
        if self._on_decision is not None:
            self._on_decision("allowed" if decision.allowed else "limited")
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
