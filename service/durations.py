"""Durations written as `30s`, `15m`, `24h`, `30d` or combined (`1h30m`)."""

from __future__ import annotations

import re
from datetime import timedelta

from service.errors import InvalidInput

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_RE = re.compile(r"^(?:\d+[smhd])+$")
_PART_RE = re.compile(r"(\d+)([smhd])")


def parse_duration(text: str) -> timedelta:
    """Parse a duration; raise `InvalidInput` naming the accepted forms otherwise."""
    compact = text.strip().lower()
    if not _DURATION_RE.match(compact):
        raise InvalidInput(
            f"invalid duration {text!r}: expected forms like 30s, 15m, 24h, 30d, 1h30m"
        )
    seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _PART_RE.findall(compact))
    if seconds > 100 * 365 * 86400:
        raise InvalidInput(f"invalid duration {text!r}: longer than 100 years")
    return timedelta(seconds=seconds)
