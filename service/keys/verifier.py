"""Key verification: the worker's cache (`cache.py`), then the Redis key directory, then
PostgreSQL; what PostgreSQL says is written back to the directory.

The directory is asked only while the key-change feed is fresh, and an entry older than a
version the feed has read is refused: without the feed, this worker could not tell a stale
entry from a good one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from service.batching import TickBatcher
from service.db import Database
from service.errors import KeyRejected
from service.keys.cache import KeyCache
from service.keys.directory import KeyDirectory, KeyEntry
from service.keys.feed import KeyChangeFeed
from service.keys.format import KeyFormat
from service.keys.record import KeyRecord
from service.keys.repository import ApiKeyRepository
from service.results import KeyCheckResult

DATABASE_READS_IN_FLIGHT = 4


class KeyVerifier:
    """Turns a presented key into a `KeyRecord` or raises `KeyRejected` with its result code."""

    def __init__(
        self,
        database: Database,
        key_format: KeyFormat,
        *,
        ttl: float,
        max_age: float | None = None,
        directory: KeyDirectory | None = None,
        feed: KeyChangeFeed | None = None,
        on_cache: Callable[[str], None] = lambda outcome: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._database = database
        self._format = key_format
        self._directory = directory
        self._feed = feed
        self._clock = clock
        self._cache = KeyCache(
            ttl=ttl,
            max_age=max_age if max_age is not None else ttl,
            is_feed_fresh=feed.is_fresh if feed is not None else lambda: False,
            clock=clock,
        )
        self._inflight: dict[str, asyncio.Task[KeyRecord | None]] = {}
        # Bounded below the pool size: a burst of cold keys never opens overflow connections
        # (each a TCP, TLS and startup exchange, then closed again as soon as it is returned).
        self._database_reads: TickBatcher[str, KeyEntry | None] = TickBatcher(
            self._from_database, max_in_flight=DATABASE_READS_IN_FLIGHT
        )
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
        is_held, record = self._cache.lookup(key_hash)
        if is_held:
            self._on_cache("hit")
            return record
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
            entry = await self._database_reads.submit(key_hash)
            if entry is not None and self._directory is not None:
                self._directory.fill(entry)
        # A change announced while the lookup ran may not be in its result: do not cache it.
        if generation == self._generation:
            self._cache.remember(key_hash, entry.record if entry else None, started_at)
        return entry.record if entry is not None else None

    async def _from_directory(self, key_hash: str) -> KeyEntry | None:
        # Without a fresh feed this worker cannot know that an entry is stale: PostgreSQL decides.
        if self._directory is None or self._feed is None or not self._feed.is_fresh():
            return None
        entry = await self._directory.get(key_hash)
        if entry is None or entry.version < self._feed.floor(key_hash):
            return None
        return entry

    async def _from_database(self, key_hashes: Sequence[str]) -> list[KeyEntry | None]:
        """One query for every key that missed in the same event-loop tick."""
        async with self._database.get_session() as session:
            rows = await ApiKeyRepository(session).get_many_by_hash(key_hashes)
        found = {
            row.key_hash: KeyEntry(row.key_hash, row.version, KeyRecord.of(row)) for row in rows
        }
        return [found.get(key_hash) for key_hash in key_hashes]

    def _finish(self, key_hash: str, task: asyncio.Task[KeyRecord | None]) -> None:
        if self._inflight.get(key_hash) is task:
            del self._inflight[key_hash]
        if not task.cancelled():
            task.exception()  # retrieved here too, in case every waiter went away

    def key_changed(self, entry: KeyEntry) -> None:
        """Forget one key (the feed read a new version of it)."""
        self._generation += 1
        self._cache.forget(entry.key_hash)
        self._inflight.pop(entry.key_hash, None)

    def invalidate(self) -> None:
        """Forget every cached result (used when another process announces a key change)."""
        self._generation += 1
        self._cache.clear()
        self._inflight.clear()
