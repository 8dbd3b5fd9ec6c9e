"""Rate-limit strings (`N/second|minute|hour|day`, optionally ` shadow`): parsing and the
policies they describe."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from service.errors import InvalidInput

PERIOD_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_LIMIT_RE = re.compile(r"^\s*(\d{1,9})\s*/\s*(second|minute|hour|day)s?(\s+shadow)?\s*$")
# Limits one key (or one owner) may carry: each is a Redis key the request's script touches.
MAX_LIMITS = 8


@dataclass(frozen=True, slots=True)
class RateLimitPolicy:
    """`limit` requests per `window_s` seconds; a `shadow` limit is counted but never refuses."""

    limit: int
    window_s: int
    shadow: bool = False

    def __str__(self) -> str:
        unit = next(name for name, seconds in PERIOD_SECONDS.items() if seconds == self.window_s)
        return f"{self.limit}/{unit}" + (" shadow" if self.shadow else "")

    @property
    def unit(self) -> str:
        return next(name for name, seconds in PERIOD_SECONDS.items() if seconds == self.window_s)


def parse_rate_limit(text: str, *, field: str = "rate limit") -> RateLimitPolicy:
    """Parse `100/minute` or `100/minute shadow`; raise `InvalidInput` naming `field` otherwise."""
    match = _LIMIT_RE.match(text)
    if match is None or int(match.group(1)) == 0:
        raise InvalidInput(
            f"{field}: invalid rate limit {text!r}: expected N/second, N/minute, N/hour or N/day "
            "with N >= 1, optionally followed by 'shadow'"
        )
    return RateLimitPolicy(
        int(match.group(1)), PERIOD_SECONDS[match.group(2)], match.group(3) is not None
    )


def parse_rate_limits(
    texts: Iterable[str], *, field: str = "rate_limits"
) -> tuple[RateLimitPolicy, ...]:
    """Several limits, each parsed; at most `MAX_LIMITS`, and per window at most one enforced
    and one shadow limit (each has one counter per window: two enforced limits of one window
    would only mean the tighter one)."""
    policies = tuple(parse_rate_limit(text, field=field) for text in texts)
    if len(policies) > MAX_LIMITS:
        raise InvalidInput(f"{field}: at most {MAX_LIMITS} limits, got {len(policies)}")
    seen: set[tuple[int, bool]] = set()
    for policy in policies:
        if (policy.window_s, policy.shadow) in seen:
            kind = "shadow" if policy.shadow else "enforced"
            raise InvalidInput(f"{field}: more than one {kind} limit per {policy.unit}")
        seen.add((policy.window_s, policy.shadow))
    return policies


def canonical_rate_limits(texts: Iterable[str], *, field: str = "rate_limits") -> list[str]:
    """The canonical texts of `texts` (what a key stores), checked as `parse_rate_limits` does."""
    return [str(policy) for policy in parse_rate_limits(texts, field=field)]
