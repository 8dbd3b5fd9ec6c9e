"""Key verification with a per-process cache: a known key costs no query on repeat."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime

from service.db import Database
from service.errors import KeyRejected
from service.keys.format import KeyFormat
from service.keys.record import KeyRecord
from service.keys.repository import ApiKeyRepository
from service.results import KeyCheckResult

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
        self._inflight: dict[str, asyncio.Task[KeyRecord | None]] = {}
        self._generation = 0
        self._on_cache = on_cache

    async def verify(self, key: str) -> KeyRecord:
        if not self._format.is_well_formed(key):
            raise KeyRejected(KeyCheckResult.MALFORMED, "the API key is malformed")
        record = await self._lookup(self._format.hash(key))
        if record is None:
            raise KeyRejected(KeyCheckResult.NOT_FOUND, "the API key is not known")
        status = record.status(datetime.now(UTC))
        if status is not KeyCheckResult.VALID:
            raise KeyRejected(status, f"the API key is {status.lower()}")
        return record

    async def _lookup(self, key_hash: str) -> KeyRecord | None:
        cached = self._cache.get(key_hash)
        if cached is not None and cached[0] > self._clock():
            self._on_cache("hit")
            return cached[1]
        self._on_cache("miss")
        # Single flight: when an entry expires under load, every concurrent request for that key
        # would otherwise query at once and queue on the pool. The query runs as its own task,
        # so a caller that disconnects does not cancel it for the others.
        fetch = self._inflight.get(key_hash)
        if fetch is None:
            fetch = asyncio.create_task(self._fetch(key_hash, self._generation))
            self._inflight[key_hash] = fetch
            fetch.add_done_callback(lambda task: self._finish(key_hash, task))
        return await asyncio.shield(fetch)

    async def _fetch(self, key_hash: str, generation: int) -> KeyRecord | None:
        started_at = self._clock()
        async with self._database.get_session() as session:
            model = await ApiKeyRepository(session).get_by_hash(key_hash)
            record = KeyRecord.of(model) if model is not None else None
        # A change announced while the query ran may not be in its result: do not cache it.
        if generation == self._generation:
            if len(self._cache) >= _MAX_CACHED:
                self._cache.clear()
            self._cache[key_hash] = (started_at + self._ttl, record)
        return record

    def _finish(self, key_hash: str, task: asyncio.Task[KeyRecord | None]) -> None:
        if self._inflight.get(key_hash) is task:
            del self._inflight[key_hash]
        if not task.cancelled():
            task.exception()  # retrieved here too, in case every waiter went away

    def invalidate(self) -> None:
        """Forget every cached result (used when another process announces a key change)."""
        self._generation += 1
        self._cache.clear()
        self._inflight.clear()
