"""The key-change feed: every worker reads the keys changed in PostgreSQL twice a second.

This is what lets a worker keep verified keys for minutes and still see a revoke within a
second, whether or not the pub/sub announcement arrived: while the feed is fresh (its last
successful read began under `max_lag_s` ago), a change not yet applied here is younger than
that. It also repairs the Redis key directory where a writer could not update it, and tells
readers the newest version of every recently changed key, so that an older directory entry is
never trusted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from service.db import Database
from service.keys.directory import DIRECTORY_TTL_S, KeyDirectory, KeyEntry
from service.keys.record import KeyRecord
from service.keys.repository import ApiKeyRepository

logger = logging.getLogger("gatekey.keys.feed")

POLL_INTERVAL_S = 0.5
# A change is seen by the poll that begins after its commit: at most an interval plus a slow
# query later. Past this lag the worker stops trusting what it cached (see KeyVerifier).
MAX_LAG_S = 0.75
# Each read starts this far before the previous read's database time: a change whose timestamp
# was taken just before that read but committed just after it is read next time.
_OVERLAP = timedelta(seconds=5)
# At start-up the feed reads every change a directory entry could still predate.
_START_WINDOW = timedelta(seconds=DIRECTORY_TTL_S)
_PRUNE_EVERY_S = 60.0


class PoolBusy(Exception):
    """Every pooled connection is in use by requests."""


class KeyChangeFeed:
    """Polls `api_keys` for changed keys; subscribers hear once of each new version of a key.

    A new key (version 1) is not a change: no worker or directory can hold an older state of it.
    """

    def __init__(
        self,
        database: Database,
        *,
        directory: KeyDirectory | None,
        interval_s: float = POLL_INTERVAL_S,
        max_lag_s: float = MAX_LAG_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._database = database
        self._subscribers: list[Callable[[KeyEntry], None]] = []
        self._directory = directory
        self._interval_s = interval_s
        self._max_lag_s = max_lag_s
        self._clock = clock
        self._synced_at = -float("inf")
        self._versions: dict[str, tuple[int, datetime]] = {}  # key hash -> (version, changed_at)
        self._unrepaired: dict[str, KeyEntry] = {}
        self._is_failing = False
        self._next_prune_at = 0.0

    def subscribe(self, on_change: Callable[[KeyEntry], None]) -> None:
        self._subscribers.append(on_change)

    @property
    def synced_at(self) -> float:
        """When (`clock` time) the last successful read began: every change committed before
        then has been applied here."""
        return self._synced_at

    def is_fresh(self) -> bool:
        """True while every change committed over `max_lag_s` ago has been applied here."""
        return self._clock() - self._synced_at <= self._max_lag_s

    def floor(self, key_hash: str) -> int:
        """The newest version of the key this feed has seen (0 when it saw no change)."""
        known = self._versions.get(key_hash)
        return known[0] if known is not None else 0

    async def run(self, stop: asyncio.Event) -> None:
        since: datetime | None = None
        while not stop.is_set():
            started = self._clock()
            try:
                if not self._database.has_free_connection():
                    # Requests hold every connection: skip this read rather than queue for
                    # one. The feed goes stale, and readers fall back to the short lifetime.
                    raise PoolBusy
                since = await self._poll(since)
            except Exception as error:  # the database is away: readers fall back to short TTLs
                if not self._is_failing:
                    logger.warning("key_feed_unavailable", extra={"error": repr(error)})
                self._is_failing = True
            else:
                if self._is_failing:
                    logger.info("key_feed_recovered")
                self._is_failing = False
                self._synced_at = started
                await self._repair_directory()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._interval_s)

    async def _poll(self, since: datetime | None) -> datetime:
        async with self._database.get_session() as session:
            repository = ApiKeyRepository(session)
            now = await repository.database_now()
            models = await repository.changed_since(now - _START_WINDOW if since is None else since)
        for model in models:
            entry = KeyEntry(model.key_hash, model.version, KeyRecord.of(model))
            known = self._versions.get(entry.key_hash)
            if known is None or known[0] < entry.version:
                self._versions[entry.key_hash] = (entry.version, model.changed_at)
                self._unrepaired[entry.key_hash] = entry
                for on_change in self._subscribers:
                    on_change(entry)
        if self._clock() >= self._next_prune_at:
            self._next_prune_at = self._clock() + _PRUNE_EVERY_S
            self._forget_older_than(now - _START_WINDOW)
        return now - _OVERLAP

    async def _repair_directory(self) -> None:
        """Write the changes read to the directory; what Redis refuses now is retried next poll
        (writes only go forward in version, so a repeat does no harm)."""
        if self._directory is None or not self._unrepaired:
            return
        entries = list(self._unrepaired.values())
        try:
            await self._directory.put(entries)
        except Exception as error:
            logger.debug("key_directory_repair_retry", extra={"error": repr(error)})
            return
        for entry in entries:
            if self._unrepaired.get(entry.key_hash) is entry:
                del self._unrepaired[entry.key_hash]

    def _forget_older_than(self, horizon: datetime) -> None:
        # A directory entry older than the horizon has expired, so nothing needs its floor.
        stale: Sequence[str] = [h for h, (_, at) in self._versions.items() if at < horizon]
        for key_hash in stale:
            del self._versions[key_hash]
