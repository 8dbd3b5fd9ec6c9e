"""Circuit breaker for the Redis limiter: after a failure, decide locally and probe now and then."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Closed: every call goes to Redis. Open: none does, except one probe per `cooldown_s`.

    The probe is the half-open state: its success closes the breaker, its failure re-opens it.
    Letting one call through per cooldown (rather than waiting for the probe's verdict forever)
    means a probe that never reports back cannot leave the breaker stuck.
    """

    def __init__(
        self,
        *,
        cooldown_s: float,
        failure_threshold: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cooldown_s = cooldown_s
        self._failure_threshold = failure_threshold
        self._consecutive_failures = 0
        self._clock = clock
        self._is_closed = True
        self._is_probing = False
        self._next_probe_at = 0.0

    @property
    def state(self) -> BreakerState:
        if self._is_closed:
            return "closed"
        return "half_open" if self._is_probing else "open"

    def allow(self) -> bool:
        """True when this call may use Redis (always when closed; as the probe when due)."""
        if self._is_closed:
            return True
        now = self._clock()
        if now < self._next_probe_at:
            return False
        self._next_probe_at = now + self.cooldown_s
        self._is_probing = True
        return True

    def record_success(self) -> bool:
        """Redis answered; returns True when this closed an open breaker."""
        was_open = not self._is_closed
        self._consecutive_failures = 0
        self._is_closed = True
        self._is_probing = False
        return was_open

    def record_failure(self) -> bool:
        """Redis failed or timed out; returns True when this opened a closed breaker.

        A closed breaker opens after `failure_threshold` failures in a row: one slow round trip
        on a CPU-starved host is not a dead Redis, and every opening hands decisions to the
        fallback, which cannot be exact across processes. A failed probe re-opens at once.
        """
        self._consecutive_failures += 1
        if self._is_closed and self._consecutive_failures < self._failure_threshold:
            return False
        was_closed = self._is_closed
        self._is_closed = False
        self._is_probing = False
        self._next_probe_at = self._clock() + self.cooldown_s
        return was_closed

    def seconds_until_probe(self) -> float:
        """How long until Redis is tried again (0 when closed): a sensible `Retry-After`."""
        if self._is_closed:
            return 0.0
        return max(0.0, self._next_probe_at - self._clock())
