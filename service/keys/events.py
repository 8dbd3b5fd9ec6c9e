"""Key-change announcements: the key directory gets the new state, then every worker's cache
forgets the key at once over Redis pub/sub (`RedisKeyspace.key_changes`).

Both are fast paths only: a lost message or a failed directory write is caught up by the
key-change feed (`feed.py`), which every worker reads from PostgreSQL twice a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

from redis.exceptions import RedisError

from service.keys.directory import KeyDirectory, KeyEntry
from service.redis.client import RedisClient
from service.redis.keyspace import RedisKeyspace

logger = logging.getLogger("gatekey.keys.events")


class KeyChangeListener(Protocol):
    async def keys_created(self, entries: list[KeyEntry]) -> None: ...

    async def key_changed(self, entry: KeyEntry) -> None: ...


class RedisKeyChangePublisher:
    """Tells Redis about committed writes; a failure is logged, not raised (the write stands, and
    the feed carries it to every worker within a second)."""

    def __init__(
        self, redis: RedisClient, keyspace: RedisKeyspace, directory: KeyDirectory
    ) -> None:
        self._redis = redis
        self._channel = keyspace.key_changes
        self._directory = directory

    async def keys_created(self, entries: list[KeyEntry]) -> None:
        """Put new keys in the directory; no announcement, since no cache can hold them yet."""
        try:
            await self._directory.put(entries)
        except (RedisError, OSError, TimeoutError):
            logger.warning("key_directory_not_filled", extra={"keys": len(entries)})

    async def key_changed(self, entry: KeyEntry) -> None:
        key_id = str(entry.record.id)
        try:
            await self._directory.put([entry])
        except (RedisError, OSError, TimeoutError):
            logger.warning("key_directory_not_updated", extra={"key_id": key_id})
        try:
            async with asyncio.timeout(0.5):
                await self._redis.publish(self._channel, key_id)
        except (RedisError, OSError, TimeoutError):
            logger.warning("key_change_not_announced", extra={"key_id": key_id})


async def listen_for_key_changes(
    redis: RedisClient,
    keyspace: RedisKeyspace,
    on_change: Callable[[str], None],
    stop: asyncio.Event,
    *,
    poll_s: float = 0.5,
) -> None:
    """Call `on_change(key_id)` per announcement until `stop` is set; resubscribe after errors."""
    while not stop.is_set():
        try:
            async with redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                await pubsub.subscribe(keyspace.key_changes)
                # Anything announced while we were not subscribed is unknown: forget it all.
                on_change("*")
                while not stop.is_set():
                    message = await pubsub.get_message(timeout=poll_s)
                    if message is not None:
                        data = message["data"]
                        on_change(data.decode() if isinstance(data, bytes) else str(data))
        except (RedisError, OSError, TimeoutError):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=poll_s)
