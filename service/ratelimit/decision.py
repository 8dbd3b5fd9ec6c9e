"""`RateLimitDecision`: the verdict of one rate-limit hit, as the API turns it into headers."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RateLimitDecision:
    """One hit's outcome; `is_fallback` when it was decided without Redis."""

    allowed: bool
    limit: int
    remaining: int  # requests still admissible right now
    reset_s: float  # seconds until the full quota is back
    retry_after_s: float  # 0 when allowed; else seconds until one request is admitted
    window_s: int
    is_fallback: bool
