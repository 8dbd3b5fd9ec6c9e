"""Key-change announcements over Redis pub/sub: every worker's cache forgets a changed key at once.

The channel is `RedisKeyspace.key_changes`. The cache TTL stays the backstop: a lost message
(Redis down, subscriber reconnecting) delays a revoke by at most `KEY_CACHE_TTL`, never
indefinitely.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from service.redis.keyspace import RedisKeyspace

logger = logging.getLogger("gatekey.keys.events")


class KeyChangeListener(Protocol):
    async def key_changed(self, key_id: uuid.UUID) -> None: ...


class RedisKeyChangePublisher:
    """Announces a change; a failure is logged, not raised: the write itself already committed."""

    def __init__(self, redis: aioredis.Redis, keyspace: RedisKeyspace) -> None:
        self._redis = redis
        self._channel = keyspace.key_changes

    async def key_changed(self, key_id: uuid.UUID) -> None:
        try:
            async with asyncio.timeout(0.5):
                await self._redis.publish(self._channel, str(key_id))
        except (RedisError, OSError, TimeoutError):
            logger.warning("key_change_not_announced", extra={"key_id": str(key_id)})


async def listen_for_key_changes(
    redis: aioredis.Redis,
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
