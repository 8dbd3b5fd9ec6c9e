"""Usage of requests admitted while Redis was unreachable, held in the process until it is back.

The limiter's script counts every request it admits; a fallback decision has no script, so the
admission is counted here instead (per key and minute) and handed to Redis, into the same usage
hashes the script writes, once Redis answers again. The usage flusher then stores it like any
other count. Each hand-over is a batch with its own id, applied at most once per key by a script
that marks the id as done: a batch whose reply was lost is simply sent again, never counted twice.
Held counts die with the process (a SIGKILL during an outage loses them), and a worker holds at
most `max_slots` (key, minute) counters, so a long outage with many keys cannot exhaust its memory:
past that, admissions of new keys or minutes are dropped and counted in `dropped`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable

from service.redis import scripts
from service.redis.client import RedisClient
from service.redis.keyspace import RedisKeyspace

logger = logging.getLogger("gatekey.ratelimit")

# About 100 bytes each: a worker holds at most ~10 MB of deferred usage.
MAX_HELD_SLOTS = 100_000

_Counts = dict[str, Counter[int]]  # key id -> minute epoch seconds -> admitted requests


class DeferredUsage:
    """Admissions counted in-process, handed to Redis in idempotent batches."""

    def __init__(
        self,
        redis: RedisClient,
        keyspace: RedisKeyspace,
        *,
        ttl_s: int,
        clock: Callable[[], float] = time.time,
        max_slots: int = MAX_HELD_SLOTS,
        on_dropped: Callable[[str, int], None] | None = None,
    ) -> None:
        self._redis = redis
        self._keyspace = keyspace
        self._ttl_s = ttl_s
        self._clock = clock
        self._open: _Counts = defaultdict(Counter)
        # Sealed batches not yet confirmed by Redis, by batch id; retried with the same id.
        self._sealed: dict[str, _Counts] = {}
        self._max_slots = max_slots
        self._slots = 0  # (key, minute) counters held, open and sealed
        self.dropped = 0  # admissions not held because every slot was taken
        self._on_dropped = on_dropped
        self._is_full = False

    def add(self, key_id: str) -> None:
        """Count one admission of the key `key_id` names (a `usage_ref`: id, and owner if any)."""
        seconds = int(self._clock())
        minute = seconds - seconds % 60
        minutes = self._open.get(key_id)
        if minutes is None or minute not in minutes:
            if self._slots >= self._max_slots:
                if not self._is_full:  # once per outage that fills the slots
                    logger.warning("ratelimit_deferred_usage_full", extra={"slots": self._slots})
                    self._is_full = True
                self.dropped += 1
                if self._on_dropped is not None:
                    self._on_dropped("full", 1)
                return
            self._slots += 1
        self._open[key_id][minute] += 1

    @property
    def is_empty(self) -> bool:
        return not self._open and not self._sealed

    def held(self) -> int:
        """Admissions not yet confirmed by Redis."""
        batches = [self._open, *self._sealed.values()]
        return sum(sum(minutes.values()) for batch in batches for minutes in batch.values())

    async def hand_over(self) -> None:
        """Send every held count to Redis; raises (keeping them) when Redis fails again."""
        if self._open:
            self._sealed[uuid.uuid4().hex], self._open = self._open, defaultdict(Counter)
        for batch_id, counts in list(self._sealed.items()):
            calls = [
                (
                    [self._keyspace.usage(key_id), self._keyspace.batch(key_id, batch_id)],
                    [self._ttl_s, *(value for item in sorted(minutes.items()) for value in item)],
                )
                for key_id, minutes in counts.items()
            ]
            await scripts.run_pipelined(self._redis, scripts.ScriptName.USAGE_APPLY_ONCE, calls)
            # Once the counts are in, as the limiter does: the flusher then finds them (on a
            # Cluster the set sits on another node, so it is a call of its own).
            await self._redis.sadd(self._keyspace.dirty, *counts)
            del self._sealed[batch_id]
            self._slots -= sum(len(minutes) for minutes in counts.values())
            self._is_full = False
