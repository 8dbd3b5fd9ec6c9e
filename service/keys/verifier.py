"""Key verification with a per-process cache: a known key costs no query on repeat."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from service.db import Database
from service.errors import KeyRejected
from service.keys.format import KeyFormat
from service.keys.record import KeyRecord
from service.keys.repository import ApiKeyRepository

_MAX_CACHED = 100_000


class KeyVerifier:
    """Turns a presented key into a `KeyRecord` or raises `KeyRejected` with DESIGN.md's code.

    Positive and negative results are cached for `ttl` seconds, keyed by hash: short enough that a
    revoke made elsewhere is seen within a second even when no invalidation message arrives.
    """

    def __init__(
        self,
        database: Database,
        key_format: KeyFormat,
        *,
        ttl: float,
        on_cache: Callable[[str], None] = lambda outcome: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._database = database
        self._format = key_format
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, KeyRecord | None]] = {}
        self._on_cache = on_cache

    async def verify(self, key: str) -> KeyRecord:
        if not self._format.is_well_formed(key):
            raise KeyRejected("MALFORMED", "the API key is malformed")
        record = await self._lookup(self._format.hash(key))
        if record is None:
            raise KeyRejected("NOT_FOUND", "the API key is not known")
        status = record.status(datetime.now(UTC))
        if status != "VALID":
            raise KeyRejected(status, f"the API key is {status.lower()}")
        return record

    async def _lookup(self, key_hash: str) -> KeyRecord | None:
        now = self._clock()
        cached = self._cache.get(key_hash)
        if cached is not None and cached[0] > now:
            self._on_cache("hit")
            return cached[1]
        self._on_cache("miss")
        async with self._database.get_session() as session:
            model = await ApiKeyRepository(session).get_by_hash(key_hash)
            record = KeyRecord.from_model(model) if model is not None else None
        if len(self._cache) >= _MAX_CACHED:
            self._cache.clear()
        self._cache[key_hash] = (now + self._ttl, record)
        return record

    def invalidate(self) -> None:
        """Forget every cached result (used when another process announces a key change)."""
        self._cache.clear()
