"""`KeyCache`: a worker's verification results, and how long each may be reused (no I/O).

A verified key is reused for `ttl`, and past it for up to `max_age` while the key-change feed is
fresh (the feed drops a changed key at once, so its freshness is what makes the long lifetime
safe). Unknown keys are remembered for `ttl` only, in a table of their own, so that a flood of
forged keys never pushes a valid key out.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from service.keys.record import KeyRecord

MAX_KNOWN = 100_000
MAX_UNKNOWN = 10_000


def _never_fresh() -> bool:
    return False


class KeyCache:
    """Key hash -> record (or "unknown"); `lookup` says whether a usable answer is held."""

    def __init__(
        self,
        *,
        ttl: float,
        max_age: float,
        is_feed_fresh: Callable[[], bool] = _never_fresh,
        clock: Callable[[], float] = time.monotonic,
        max_known: int = MAX_KNOWN,
        max_unknown: int = MAX_UNKNOWN,
    ) -> None:
        self._ttl = ttl
        self._max_age = max(ttl, max_age)
        self._is_feed_fresh = is_feed_fresh
        self._clock = clock
        self._max_known = max_known
        self._max_unknown = max_unknown
        # key hash -> (reusable until, reusable while the feed is fresh until, record)
        self._known: dict[str, tuple[float, float, KeyRecord]] = {}
        self._unknown: dict[str, float] = {}

    def lookup(self, key_hash: str) -> tuple[bool, KeyRecord | None]:
        """(True, record) for a known key, (True, None) for an unknown one, (False, None) when
        nothing usable is held."""
        known = self._known.get(key_hash)
        if known is not None:
            now = self._clock()
            if now < known[0] or (now < known[1] and self._is_feed_fresh()):
                return True, known[2]
            return False, None
        unknown_until = self._unknown.get(key_hash)
        if unknown_until is not None and self._clock() < unknown_until:
            return True, None
        return False, None

    def remember(self, key_hash: str, record: KeyRecord | None, fetched_at: float) -> None:
        """Hold an answer fetched at `fetched_at` (lifetimes count from when the read began)."""
        if record is None:
            # An LRU of its own: a flood of forged keys pushes out the oldest forged key, never a
            # valid one, and never empties the table at once (as clearing it would).
            if (
                self._unknown.pop(key_hash, None) is None
                and len(self._unknown) >= self._max_unknown
            ):
                del self._unknown[next(iter(self._unknown))]
            self._unknown[key_hash] = fetched_at + self._ttl
            return
        self._unknown.pop(key_hash, None)
        if self._known.pop(key_hash, None) is None and len(self._known) >= self._max_known:
            del self._known[next(iter(self._known))]  # the least recently fetched goes first
        self._known[key_hash] = (fetched_at + self._ttl, fetched_at + self._max_age, record)

    def forget(self, key_hash: str) -> None:
        self._known.pop(key_hash, None)
        self._unknown.pop(key_hash, None)

    def clear(self) -> None:
        self._known.clear()
        self._unknown.clear()
