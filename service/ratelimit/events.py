"""`LimiterEvents`: what the Redis limiter reports about itself, for metrics, as plain callables."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


def _ignore(*args: object) -> None:
    del args


@dataclass(frozen=True, slots=True)
class LimiterEvents:
    """Callables the limiter calls on the way; each does nothing unless given, so the limiter
    stays free of any metrics library."""

    # Seconds one pipelined batch took from send to last reply (one call per batch, not per hit).
    round_trip: Callable[[float], None] = _ignore
    # True when the circuit breaker opens, False when it closes again.
    breaker_open: Callable[[bool], None] = _ignore
    # Admitted requests whose usage will never reach Redis: `full` (the worker's deferred-usage
    # table was full during an outage) or `shutdown` (the worker stopped before Redis returned).
    usage_dropped: Callable[[str, int], None] = _ignore
