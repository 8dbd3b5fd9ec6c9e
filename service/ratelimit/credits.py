"""Credits: a key's count of units, spent by its requests' cost, optionally refilled each period
(`--refill 1000/day`: set back to 1,000 at each UTC day boundary, lazily, on the next use)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from service.errors import InvalidInput
from service.ratelimit.policy import RateLimitPolicy, parse_rate_limit

# Far above any plan's count, far below where Lua's doubles lose integers (2^53).
MAX_CREDITS = 10**15


@dataclass(frozen=True, slots=True)
class Credits:
    """What the limiter's script needs of a key's credits: the admin's `epoch`, the count to
    start from at that epoch (`initial`), and the refill (`refill_amount` per `period_s`; 0:
    none)."""

    epoch: int
    initial: int
    refill_amount: int = 0
    period_s: int = 0


@dataclass(frozen=True, slots=True)
class CreditState:
    """Credits as PostgreSQL holds them, to seed Redis after its state is lost."""

    remaining: int
    epoch: int
    refilled_at_s: int  # the start of the period of the last refill (epoch seconds)


def check_credits(credits: int) -> int:
    if not 0 <= credits <= MAX_CREDITS:
        raise InvalidInput(f"credits: must be 0 to {MAX_CREDITS:,}, got {credits}")
    return credits


def parse_refill(text: str) -> RateLimitPolicy:
    """`1000/day`: the count credits are set back to at each period boundary."""
    policy = parse_rate_limit(text, field="refill")
    if policy.shadow:
        raise InvalidInput(f"refill: a refill cannot be shadow: {text!r}")
    return policy


@lru_cache(maxsize=4096)
def credits_of(remaining: int | None, refill: str | None, epoch: int) -> Credits | None:
    """A key's credits as its record holds them (None: it has none); cached, as every
    request asks."""
    if remaining is None:
        return None
    if refill is None:
        return Credits(epoch, remaining)
    policy = parse_refill(refill)
    return Credits(epoch, remaining, policy.limit, policy.window_s)
