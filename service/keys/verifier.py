"""Key verification: a per-process cache, then the Redis key directory, then PostgreSQL.

How long a cached key may be reused depends on whether this worker can still see changes:
while the key-change feed is fresh, a verified key is reused for up to `max_age` (a change
drops it at once, announced or read from the feed); when the feed is not, for `ttl` only, which
bounds how late a revoke can be seen whatever else has failed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime

from service.db import Database
from service.errors import KeyRejected
from service.keys.directory import KeyDirectory, KeyEntry
from service.keys.format import KeyFormat
from service.keys.record import KeyRecord
from service.keys.repository import ApiKeyRepository
from service.results import KeyCheckResult

_MAX_CACHED = 100_000
_MAX_NEGATIVE = 10_000
# (reusable until, then reusable while the feed is fresh until, record)
_Cached = tuple[float, float, KeyRecord]


def _never_fresh() -> bool:
    return False


def _no_floor(key_hash: str) -> int:
    del key_hash
    return 0


class KeyVerifier:
    """Turns a presented key into a `KeyRecord` or raises `KeyRejected` with DESIGN.md's code.

    Unknown keys are remembered for `ttl` only, in a table of their own, so that forged keys
    never push a valid key out of the cache.
    """

    def __init__(
        self,
        database: Database,
        key_format: KeyFormat,
        *,
        ttl: float,
        max_age: float | None = None,
        directory: KeyDirectory | None = None,
        is_feed_fresh: Callable[[], bool] = _never_fresh,
        version_floor: Callable[[str], int] = _no_floor,
        on_cache: Callable[[str], None] = lambda outcome: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._database = database
        self._format = key_format
        self._ttl = ttl
        self._max_age = max(ttl, max_age if max_age is not None else ttl)
        self._directory = directory
        self._is_feed_fresh = is_feed_fresh
        self._version_floor = version_floor
        self._clock = clock
        self._cache: dict[str, _Cached] = {}
        self._unknown: dict[str, float] = {}
        self._inflight: dict[str, asyncio.Task[KeyRecord | None]] = {}
        self._fills: set[asyncio.Task[None]] = set()
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
        if cached is not None:
            now = self._clock()
            if now < cached[0] or (now < cached[1] and self._is_feed_fresh()):
                self._on_cache("hit")
                return cached[2]
        elif key_hash in self._unknown and self._unknown[key_hash] > self._clock():
            self._on_cache("hit")
            return None
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
        entry = await self._from_directory(key_hash)
        if entry is None:
            entry = await self._from_database(key_hash)
            if entry is not None:
                self._fill_directory(entry)
        # A change announced while the lookup ran may not be in its result: do not cache it.
        if generation == self._generation:
            self._remember(key_hash, entry.record if entry is not None else None, started_at)
        return entry.record if entry is not None else None

    async def _from_directory(self, key_hash: str) -> KeyEntry | None:
        # Without a fresh feed this worker cannot know that an entry is stale: PostgreSQL decides.
        if self._directory is None or not self._is_feed_fresh():
            return None
        entry = await self._directory.get(key_hash)
        if entry is None or entry.version < self._version_floor(key_hash):
            return None
        return entry

    async def _from_database(self, key_hash: str) -> KeyEntry | None:
        async with self._database.get_session() as session:
            model = await ApiKeyRepository(session).get_by_hash(key_hash)
            if model is None:
                return None
            return KeyEntry(key_hash, model.version, KeyRecord.of(model))

    def _fill_directory(self, entry: KeyEntry) -> None:
        """Store what PostgreSQL said, in the background: a failure only costs the next worker
        the same query."""
        if self._directory is None:
            return
        task = asyncio.get_running_loop().create_task(self._directory.put([entry]))
        self._fills.add(task)
        task.add_done_callback(self._fill_done)

    def _fill_done(self, task: asyncio.Task[None]) -> None:
        self._fills.discard(task)
        if not task.cancelled():
            task.exception()  # the directory is a cache: a failed fill is not an error

    def _remember(self, key_hash: str, record: KeyRecord | None, started_at: float) -> None:
        if record is None:
            if len(self._unknown) >= _MAX_NEGATIVE:
                self._unknown.clear()
            self._unknown[key_hash] = started_at + self._ttl
            return
        if self._cache.pop(key_hash, None) is None and len(self._cache) >= _MAX_CACHED:
            del self._cache[next(iter(self._cache))]  # the least recently fetched goes first
        self._cache[key_hash] = (started_at + self._ttl, started_at + self._max_age, record)

    def _finish(self, key_hash: str, task: asyncio.Task[KeyRecord | None]) -> None:
        if self._inflight.get(key_hash) is task:
            del self._inflight[key_hash]
        if not task.cancelled():
            task.exception()  # retrieved here too, in case every waiter went away

    def key_changed(self, entry: KeyEntry) -> None:
        """Forget one key (the feed read a new version of it)."""
        self._generation += 1
        self._cache.pop(entry.key_hash, None)
        self._unknown.pop(entry.key_hash, None)
        self._inflight.pop(entry.key_hash, None)

    def invalidate(self) -> None:
        """Forget every cached result (used when another process announces a key change)."""
        self._generation += 1
        self._cache.clear()
        self._unknown.clear()
        self._inflight.clear()

    async def aclose(self) -> None:
        """Let directory fills in flight finish (they hold pooled Redis connections)."""
        if self._fills:
            await asyncio.gather(*self._fills, return_exceptions=True)
