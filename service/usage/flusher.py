"""`UsageFlusher`: moves per-minute counts from Redis to PostgreSQL in the background.

One flusher at a time across processes (a Redis lock that expires, so a killed holder blocks no
one for long). Counts are absolute and stored with GREATEST, so any step may be replayed: a crash
between the PostgreSQL commit and the Redis clean-up leaves the claimed set behind, and the next
flush simply stores the same numbers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.db import Database
from service.errors import DatabaseUnavailable
from service.redis import scripts
from service.redis.keyspace import RedisKeyspace
from service.usage.repository import MinuteCount
from service.usage.service import record_usage

logger = logging.getLogger("gatekey.usage")
# Redis or PostgreSQL out of reach: expected now and then, retried every interval.
_OUTAGES = (RedisConnectionError, RedisTimeoutError, DatabaseUnavailable, OSError)


@dataclass(frozen=True, slots=True)
class KeyCounts:
    """One key's counters as read from Redis: minute epoch seconds -> cumulative count."""

    key_id: str
    minutes: dict[int, int]


class UsageFlusher:
    """Every `interval_s`, stores the usage of keys marked dirty; run one per process."""

    def __init__(
        self,
        redis: Redis,
        database: Database,
        *,
        interval_s: float,
        keyspace: RedisKeyspace | None = None,
        lock_ttl_s: float | None = None,
        chunk_size: int = 500,
        on_flush: Callable[[int], None] | None = None,
        on_flush_error: Callable[[], None] | None = None,
        on_pending: Callable[[int], None] | None = None,
    ) -> None:
        self._redis = redis
        self._database = database
        self._interval_s = interval_s
        self._keyspace = keyspace or RedisKeyspace()
        # Long enough for a slow flush, short enough that a SIGKILLed holder delays the next
        # flush by seconds; an expired holder cannot do harm, its Redis steps are fenced.
        self._lock_ttl_ms = int(1000 * (lock_ttl_s or max(5.0, 3 * interval_s)))
        self._chunk_size = chunk_size
        self._on_flush = on_flush
        self._on_flush_error = on_flush_error
        self._on_pending = on_pending
        self._claim_script = scripts.register(redis, scripts.ScriptName.USAGE_CLAIM)
        self._release_script = scripts.register(redis, scripts.ScriptName.USAGE_RELEASE)
        self.pending_keys = 0
        self._is_failing = False

    async def run(self, stop_event: asyncio.Event) -> None:
        """Flush every interval until `stop_event` is set, then once more and return.

        The last flush starts after the stop, so whatever was counted before it is claimed by
        this flusher or by the one holding the lock at that moment (which flushes again too).
        """
        while not stop_event.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_event.wait(), timeout=self._interval_s)
            await self._cycle()
        await self._cycle()

    async def flush(self) -> int | None:
        """One flush; the number of keys flushed, or None when another process holds the lock."""
        token = secrets.token_hex(16)
        acquired = await self._redis.set(
            self._keyspace.flush_lock, token, nx=True, px=self._lock_ttl_ms
        )
        if not acquired:
            return None
        is_complete = False
        try:
            key_ids = await self.claim(token)
            if key_ids is None:
                return None
            for start in range(0, len(key_ids), self._chunk_size):
                chunk = key_ids[start : start + self._chunk_size]
                final_before, counts = await self.read_counts(chunk)
                await self.store(counts)
                await self.forget_final(counts, final_before)
            is_complete = True
            return len(key_ids)
        finally:
            await self._release_script(
                keys=[self._keyspace.flush_lock, self._keyspace.processing],
                args=[token, "1" if is_complete else "0"],
            )

    async def claim(self, token: str) -> list[str] | None:
        """Move the dirty set aside atomically; the key ids to flush (None: lock lost)."""
        keyspace = self._keyspace
        members = await self._claim_script(
            keys=[keyspace.flush_lock, keyspace.dirty, keyspace.processing], args=[token]
        )
        if members is None:
            return None
        return sorted(_text(member) for member in members)

    async def read_counts(self, key_ids: Sequence[str]) -> tuple[int, list[KeyCounts]]:
        """Read the counters, and the minute (Redis clock) before which they can no longer move.

        The clock is read first: a minute that was over before the read cannot have grown since.
        The minute before the current one also stays, as margin for clock skew between shards.
        """
        seconds, _ = await self._redis.time()
        final_before = seconds - seconds % 60 - 60
        pipeline = self._redis.pipeline(transaction=False)
        for key_id in key_ids:
            pipeline.hgetall(self._keyspace.usage(key_id))
        hashes = await pipeline.execute()
        counts = [
            KeyCounts(key_id, {int(minute): int(count) for minute, count in fields.items()})
            for key_id, fields in zip(key_ids, hashes, strict=True)
        ]
        return final_before, counts

    async def store(self, counts: Sequence[KeyCounts]) -> None:
        async with self._database.get_session() as session:
            await record_usage(session=session, counts=to_rows(counts))

    async def forget_final(self, counts: Sequence[KeyCounts], final_before: int) -> None:
        """Drop minutes that are stored and can no longer grow (call only after `store`)."""
        pipeline = self._redis.pipeline(transaction=False)
        for key_id, minutes in final_minutes(counts, final_before).items():
            pipeline.hdel(self._keyspace.usage(key_id), *minutes)
        await pipeline.execute()

    async def _cycle(self) -> None:
        try:
            flushed = await self.flush()
        except Exception as error:  # a background loop must outlive Redis and PostgreSQL outages
            self._log_failure(error)
            if self._on_flush_error is not None:
                self._on_flush_error()
        else:
            if self._is_failing:
                logger.info("usage_flush_recovered")
                self._is_failing = False
            if flushed is not None and self._on_flush is not None:
                self._on_flush(flushed)
        with contextlib.suppress(Exception):
            self.pending_keys = await self._redis.scard(self._keyspace.dirty)
            if self._on_pending is not None:
                self._on_pending(self.pending_keys)

    def _log_failure(self, error: Exception) -> None:
        """An outage is one line when it starts (the failure counter tells how long it lasts);
        anything else is a bug and keeps its traceback every time."""
        if not isinstance(error, _OUTAGES):
            logger.warning("usage_flush_failed", exc_info=error)
        elif not self._is_failing:
            logger.warning(
                "usage_flush_failed", extra={"error": f"{type(error).__name__}: {error}"}
            )
        self._is_failing = True


def to_rows(counts: Sequence[KeyCounts]) -> list[MinuteCount]:
    """Rows for PostgreSQL; a key id that is not a UUID cannot be an API key and is skipped."""
    return [
        MinuteCount(key_uuid, datetime.fromtimestamp(minute, UTC), count)
        for key in counts
        if (key_uuid := _parse_uuid(key.key_id)) is not None
        for minute, count in sorted(key.minutes.items())
    ]


def final_minutes(counts: Sequence[KeyCounts], final_before: int) -> dict[str, list[int]]:
    """Per key, the minutes read that started before `final_before` (they cannot grow)."""
    final = {
        key.key_id: sorted(minute for minute in key.minutes if minute < final_before)
        for key in counts
    }
    return {key_id: minutes for key_id, minutes in final.items() if minutes}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _parse_uuid(key_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(key_id)
    except ValueError:
        logger.warning("usage_key_id_not_a_uuid", extra={"key_id": key_id})
        return None
