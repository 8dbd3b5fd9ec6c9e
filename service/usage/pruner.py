"""`UsagePruner`: deletes usage rows older than `USAGE_RETENTION`, a bounded batch at a time.

One process per interval across every worker and host: the flusher's Redis lock pattern (SET NX
with an expiry), except that the key is never released. Its expiry is the schedule: whoever sets
it prunes, and everyone else skips until it expires. A cycle is bounded (`max_batches`
statements, each under a statement timeout) to well within the interval, so two never overlap;
a backlog (retention first enabled or shortened) drains at `max_batches × batch_size` rows per
interval, and the database has the rest of the interval for everything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from datetime import timedelta

from service.db import Database
from service.redis.client import RedisClient
from service.redis.keyspace import RedisKeyspace
from service.usage.service import prune_expired

logger = logging.getLogger("gatekey.usage")

PRUNE_INTERVAL_S = 60.0
BATCH_SIZE = 10_000
MAX_BATCHES = 5
# Per DELETE; MAX_BATCHES of them stay well within the interval even when each runs out.
BATCH_TIMEOUT_MS = 5_000


class UsagePruner:
    """Every `interval_s`, at most `max_batches` deletes of at most `batch_size` expired rows;
    run one per process, the Redis gate lets one of them work per interval."""

    def __init__(
        self,
        redis: RedisClient,
        database: Database,
        *,
        retention: timedelta,
        keyspace: RedisKeyspace | None = None,
        interval_s: float = PRUNE_INTERVAL_S,
        batch_size: int = BATCH_SIZE,
        max_batches: int = MAX_BATCHES,
        on_pruned: Callable[[int], None] | None = None,
    ) -> None:
        self._redis = redis
        self._database = database
        self._retention = retention
        self._keyspace = keyspace or RedisKeyspace()
        self._interval_ms = int(1000 * interval_s)
        self._batch_size = batch_size
        self._max_batches = max_batches
        self._on_pruned = on_pruned
        self._is_failing = False

    async def run(self, stop_event: asyncio.Event) -> None:
        """A cycle at once (a restarted deployment catches up), then one per interval, until
        `stop_event` is set."""
        while not stop_event.is_set():
            await self._cycle()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_event.wait(), timeout=self._interval_ms / 1000)

    async def prune(self) -> list[int] | None:
        """One cycle: the rows each batch deleted, or None when another process (or this one)
        pruned within the interval. Stops early at a batch that found fewer than a full batch,
        and before a batch when requests hold every pooled connection: pruning can wait a
        turn, requests should never queue behind it."""
        gate = await self._redis.set(
            self._keyspace.prune_gate, secrets.token_hex(8), nx=True, px=self._interval_ms
        )
        if not gate:
            return None
        batches: list[int] = []
        while len(batches) < self._max_batches and self._database.has_free_connection():
            async with self._database.get_session() as session:
                deleted = await prune_expired(
                    session=session,
                    retention=self._retention,
                    limit=self._batch_size,
                    timeout_ms=BATCH_TIMEOUT_MS,
                )
            batches.append(deleted)
            if self._on_pruned is not None and deleted:
                self._on_pruned(deleted)
            if deleted < self._batch_size:
                break
        return batches

    async def _cycle(self) -> None:
        try:
            batches = await self.prune()
        except Exception as error:  # a background loop must outlive Redis and PostgreSQL outages
            # Once per run of failures, with its traceback; the next success says it is over.
            if not self._is_failing:
                logger.warning("usage_prune_failed", exc_info=error)
            self._is_failing = True
            return
        if self._is_failing:
            logger.info("usage_prune_recovered")
            self._is_failing = False
        if batches and sum(batches):
            logger.info(
                "usage_pruned",
                extra={
                    "rows": sum(batches),
                    "batches": len(batches),
                    "backlog": batches[-1] == self._batch_size,
                },
            )
