"""`UsageFlusher`: moves per-minute counts from Redis to PostgreSQL in the background.

One flusher at a time across processes (a Redis lock that expires, so a killed holder blocks no
one for long). Counts are absolute and stored with GREATEST, so any step may be replayed: a crash
between the PostgreSQL commit and the Redis clean-up leaves the claimed set behind, and the next
flush simply stores the same numbers again. Each process remembers what it stored
(`StoredCounts`), so a flush writes only the minutes whose count moved.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Sequence

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.db import Database
from service.errors import DatabaseUnavailable
from service.redis import scripts
from service.redis.client import RedisClient, slot_groups
from service.redis.keyspace import RedisKeyspace
from service.usage.service import record_usage
from service.usage.stored import FlushPlan, StoredCounts

logger = logging.getLogger("gatekey.usage")
# Redis or PostgreSQL out of reach: expected now and then, retried every interval.
_OUTAGES = (RedisConnectionError, RedisTimeoutError, DatabaseUnavailable, OSError)


class UsageFlusher:
    """Every `interval_s`, stores the usage of keys marked dirty; run one per process."""

    def __init__(
        self,
        redis: RedisClient,
        database: Database,
        *,
        interval_s: float,
        keyspace: RedisKeyspace | None = None,
        lock_ttl_s: float | None = None,
        chunk_size: int = 1000,
        read_budget: int = 20_000,
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
        # Shorter than the interval, so the process that flushed last finds it gone next time.
        self._flushed_ttl_ms = max(1, int(900 * interval_s))
        # Keys per read, and fields after which a read stops early: a hash holds ~2 minutes
        # (4 fields) when flushes keep up, so the budget only bites on a backlog.
        self._chunk_size = chunk_size
        self._read_budget = read_budget
        self._on_flush = on_flush
        self._on_flush_error = on_flush_error
        self._on_pending = on_pending
        self._claim_script = scripts.register(redis, scripts.ScriptName.USAGE_CLAIM)
        self._release_script = scripts.register(redis, scripts.ScriptName.USAGE_RELEASE)
        self._stored = StoredCounts()
        self.pending_keys = 0
        self._is_failing = False

    async def run(self, stop_event: asyncio.Event) -> None:
        """Flush every interval until `stop_event` is set, then once more and return.

        A periodic flush is skipped when any process completed one within the interval: however
        many workers, the keys are flushed about once per interval, not once per worker. The
        last flush starts after the stop, unconditionally, so whatever was counted before it is
        claimed by this flusher or by the one holding the lock at that moment (which flushes
        again too).
        """
        while not stop_event.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_event.wait(), timeout=self._interval_s)
            await self._cycle(unless_recent=True)
        await self._cycle()

    async def flush(self, *, unless_recent: bool = False) -> int | None:
        """One flush; the number of keys flushed, or None when another process holds the lock
        or (`unless_recent`) completed a flush within the interval."""
        if unless_recent and await self._redis.exists(self._keyspace.flushed):
            return None
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
            done = 0
            while done < len(key_ids):
                plan = await self.read(key_ids[done : done + self._chunk_size])
                await self.store(plan)
                await self.forget_final(plan)
                done += plan.keys_read
            is_complete = True
            return len(key_ids)
        finally:
            await self._release_script(
                keys=[self._keyspace.flush_lock, self._keyspace.processing, self._keyspace.flushed],
                args=[token, "1" if is_complete else "0", self._flushed_ttl_ms],
            )

    async def claim(self, token: str) -> list[str] | None:
        """Move the dirty set aside atomically; the key refs (`usage_ref`) to flush (None: lock
        lost)."""
        keyspace = self._keyspace
        members = await self._claim_script(
            keys=[keyspace.flush_lock, keyspace.dirty, keyspace.processing], args=[token]
        )
        if members is None:
            return None
        return sorted(_text(member) for member in members)

    async def read(self, key_ids: Sequence[str]) -> FlushPlan:
        """Read the counters of the first keys (all, unless the read budget is spent) and
        plan what they still need stored and dropped.

        The script reads Redis's clock with the counters, at one instant: a minute over by then
        cannot grow afterwards (but for a late hand-over of deferred usage, which the clean-up
        keeps). The minute before the current one stays too, as margin for clock skew between
        shards. On a Cluster, one call per hash slot: the earliest of their clocks counts, and
        the keys read are those before the first a cut-short call left out.
        """
        keys = [self._keyspace.usage(key_id) for key_id in key_ids]
        groups = slot_groups(self._redis, keys)
        calls = [([keys[i] for i in group], [self._read_budget]) for group in groups]
        replies = await scripts.run_pipelined(self._redis, scripts.ScriptName.USAGE_READ, calls)
        by_index: dict[int, bytes] = {}
        for group, (_, *read) in zip(groups, replies, strict=True):
            by_index.update(zip(group, read, strict=False))  # a call stops at its budget
        hashes: list[bytes] = []
        while len(hashes) in by_index:
            hashes.append(by_index[len(hashes)])
        seconds = min(int(reply[0]) for reply in replies)
        final_before = seconds - seconds % 60 - 60
        credits = await self._read_credits(key_ids[: len(hashes)])
        await asyncio.sleep(0)  # requests waiting on this worker go between parse and plan
        plan = self._stored.plan(key_ids[: len(hashes)], hashes, final_before)
        for ref, state in zip(key_ids, credits, strict=False):
            plan.credits.add(ref, state)
        return plan

    async def _read_credits(self, refs: Sequence[str]) -> list[list[bytes | None]]:
        """Each key's credits hash (`r`, `e`, `t`; None each for a key without credits), read
        after its usage: the count persisted is never older than the usage stored with it."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for ref in refs:
                pipe.hmget(self._keyspace.credits(ref), ["r", "e", "t"])
            return list(await pipe.execute())

    async def store(self, plan: FlushPlan) -> None:
        """Write the plan's rows in one commit (none: no session at all), then remember them."""
        if plan.key_ids:
            async with self._database.get_session() as session:
                await record_usage(session=session, plan=plan)
        self._stored.remember(plan)

    async def forget_final(self, plan: FlushPlan) -> None:
        """Drop minutes that are stored and can no longer grow, each only while it still holds
        the count read (call only after `store`)."""
        if not plan.final:
            return
        keys = [self._keyspace.usage(key_id) for key_id in plan.final]
        args = [(len(pairs) // 2, *pairs) for pairs in plan.final.values()]
        calls = [
            ([keys[i] for i in group], [value for i in group for value in args[i]])
            for group in slot_groups(self._redis, keys)
        ]
        await scripts.run_pipelined(self._redis, scripts.ScriptName.USAGE_FORGET, calls)

    async def _cycle(self, *, unless_recent: bool = False) -> None:
        try:
            flushed = await self.flush(unless_recent=unless_recent)
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


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
