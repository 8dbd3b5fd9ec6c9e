"""Usage of requests admitted while Redis was unreachable, held in the process until it is back.

The limiter's script counts every request it admits; a fallback decision has no script, so the
admission is counted here instead (per key and minute) and handed to Redis, into the same usage
hashes the script writes, once Redis answers again. The usage flusher then stores it like any
other count. Each hand-over is a batch with its own id, applied at most once per key by a script
that marks the id as done: a batch whose reply was lost is simply sent again, never counted twice.
Held counts die with the process (a SIGKILL during an outage loses them).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable

from redis.asyncio import Redis

from service.ratelimit.keyspace import RedisKeyspace

# KEYS: usage hash, batch marker (same hash tag). ARGV: TTL (s), then minute, count pairs.
_APPLY_ONCE = """
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then
  for i = 2, #ARGV, 2 do
    redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
  end
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return 1
"""

_Counts = dict[str, Counter[int]]  # key id -> minute epoch seconds -> admitted requests


class DeferredUsage:
    """Admissions counted in-process, handed to Redis in idempotent batches."""

    def __init__(
        self,
        redis: Redis,
        keyspace: RedisKeyspace,
        *,
        ttl_s: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._keyspace = keyspace
        self._ttl_s = ttl_s
        self._clock = clock
        self._open: _Counts = defaultdict(Counter)
        # Sealed batches not yet confirmed by Redis, by batch id; retried with the same id.
        self._sealed: dict[str, _Counts] = {}
        self._apply_once = redis.register_script(_APPLY_ONCE)

    def add(self, key_id: str) -> None:
        seconds = int(self._clock())
        self._open[key_id][seconds - seconds % 60] += 1

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
            async with self._redis.pipeline(transaction=False) as pipe:
                for key_id, minutes in counts.items():
                    pairs = [value for item in sorted(minutes.items()) for value in item]
                    await self._apply_once(
                        keys=[self._keyspace.usage(key_id), self._keyspace.batch(key_id, batch_id)],
                        args=[self._ttl_s, *pairs],
                        client=pipe,
                    )
                # After the counts, as the limiter does: the flusher then finds them.
                pipe.sadd(self._keyspace.dirty, *counts)
                await pipe.execute()
            del self._sealed[batch_id]
