"""`ClusterUpkeep`: what the limiter's batches need on a Redis Cluster besides their scripts: the
master holding each hit's keys, the dirty set marked once the scripts answered, and the slot map
read again after a failure."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

from redis.asyncio import RedisCluster
from redis.asyncio.cluster import ClusterNode

from service.redis.keyspace import RedisKeyspace

Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]
# A slot map read after a failure: the next failed batch asks again if this one gives up.
SLOT_MAP_READ_S = 1.0


class ClusterUpkeep:
    """`spawn` runs a background job the limiter waits for when it closes."""

    def __init__(
        self, cluster: RedisCluster, keyspace: RedisKeyspace, *, deadline_s: float, spawn: Spawn
    ) -> None:
        self._cluster = cluster
        self._keyspace = keyspace
        self._deadline_s = deadline_s
        self._spawn = spawn
        self._unmarked: set[str] = set()  # key ids counted by a script, not yet in the dirty set
        self._marking: asyncio.Task[None] | None = None
        self._refreshing: asyncio.Task[None] | None = None

    @property
    def unmarked(self) -> int:
        return len(self._unmarked)

    async def group_by_master(self, refs: Sequence[str]) -> list[tuple[ClusterNode, list[int]]]:
        """The indices of `refs` (`usage_ref`) per master holding their keys (the slot map is
        read at the first call)."""
        async with asyncio.timeout(self._deadline_s):
            await self._cluster.initialize()
        groups: dict[str, tuple[ClusterNode, list[int]]] = {}
        for index, ref in enumerate(refs):
            node = self._cluster.get_node_from_key(self._keyspace.usage(ref))
            if node is None:  # only asked for replicas, never for a primary
                raise LookupError(ref)
            groups.setdefault(node.name, (node, []))[1].append(index)
        return list(groups.values())

    def mark_dirty(self, key_ids: Iterable[str]) -> None:
        """Add key refs to the dirty set (on a master of its own) in the background, one SADD at
        a time; ids a failed SADD held go with the next batch's."""
        self._unmarked.update(key_ids)
        if not self._unmarked or (self._marking is not None and not self._marking.done()):
            return

        async def mark() -> None:
            while self._unmarked:
                key_ids, self._unmarked = self._unmarked, set()
                try:
                    async with asyncio.timeout(self._deadline_s):
                        await self._cluster.sadd(self._keyspace.dirty, *key_ids)
                except Exception:  # whatever broke, the next batch tries again
                    self._unmarked |= key_ids
                    return

        self._marking = self._spawn(mark())

    def refresh_slots(self) -> None:
        """Read the slot map again (one read at a time): after a failover, a promoted replica
        serves the slots of the master that failed."""
        if self._refreshing is not None and not self._refreshing.done():
            return

        async def refresh() -> None:
            with contextlib.suppress(Exception):  # the next failed batch asks again
                async with asyncio.timeout(SLOT_MAP_READ_S):
                    await self._cluster.nodes_manager.initialize()

        self._refreshing = self._spawn(refresh())
