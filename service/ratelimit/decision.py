"""`RateLimitDecision`: the verdict of one rate-limit check, as the API turns it into headers."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RateLimitDecision:
    """One check's outcome, described by its binding limit (the refusing one, or the one closest
    to exhaustion); `is_fallback` when it was decided without Redis."""

    allowed: bool
    limit: int
    remaining: int  # requests still admissible right now
    reset_s: float  # seconds until the full quota is back
    retry_after_s: float  # 0 when allowed; -1 when no wait helps; else seconds until admitted
    window_s: int
    is_fallback: bool
    name: str = "default"  # the binding limit's name in `RateLimit-Policy`
    # Every enforced limit in the draft's form; None: the binding limit alone.
    policy_header: str | None = None
    shadow_limited: bool = False  # a shadow limit would have refused this request
    usage_exceeded: bool = False  # refused because the key's credits are spent
    credits_remaining: int | None = None  # after this request; None: the key has no credits

    @property
    def is_near_limit(self) -> bool:
        """Admitted, leaving less than 20 % of the binding (least remaining) limit."""
        return self.allowed and self.remaining * 5 < self.limit
