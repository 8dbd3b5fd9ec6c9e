"""Rate-limit strings (`N/second|minute|hour|day`): parsing and the policy they describe."""

from __future__ import annotations

import re
from dataclasses import dataclass

from service.errors import InvalidInput

PERIOD_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_LIMIT_RE = re.compile(r"^\s*(\d{1,9})\s*/\s*(second|minute|hour|day)s?\s*$")


@dataclass(frozen=True, slots=True)
class RateLimitPolicy:
    """`limit` requests per `window_s` seconds."""

    limit: int
    window_s: int

    def __str__(self) -> str:
        unit = next(name for name, seconds in PERIOD_SECONDS.items() if seconds == self.window_s)
        return f"{self.limit}/{unit}"


def parse_rate_limit(text: str) -> RateLimitPolicy:
    """Parse `100/minute`; raise `InvalidInput` with the accepted forms otherwise."""
    match = _LIMIT_RE.match(text)
    if match is None or int(match.group(1)) == 0:
        raise InvalidInput(
            f"invalid rate limit {text!r}: expected N/second, N/minute, N/hour or N/day with N >= 1"
        )
    return RateLimitPolicy(int(match.group(1)), PERIOD_SECONDS[match.group(2)])
