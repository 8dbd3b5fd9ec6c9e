"""`CreditSeeder`: puts a key's credits back into Redis from PostgreSQL after Redis lost them (a
restart, a flush), so the limiter's script never starts from a possibly stale cached record."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from service.ratelimit.credits import CreditState
from service.redis import scripts
from service.redis.client import RedisClient
from service.redis.keyspace import RedisKeyspace

# Reads a key's credits from PostgreSQL (None: it has none).
CreditStates = Callable[[str], Awaitable[CreditState | None]]


class CreditSeeder:
    """One seed at a time per key: the requests that meet the missing state together (a new
    key's first burst, or every key after Redis lost its data) share it."""

    def __init__(
        self, redis: RedisClient, keyspace: RedisKeyspace, credit_states: CreditStates
    ) -> None:
        self._redis = redis
        self._keyspace = keyspace
        self._credit_states = credit_states
        self._seeding: dict[str, asyncio.Future[bool]] = {}

    async def seed(self, key_id: str, ref: str) -> bool:
        """Seed the key `ref` names, unless a concurrent seed or request did first; False when
        the key has no credits (any more)."""
        seeding = self._seeding.get(ref)
        if seeding is None:
            seeding = self._seeding[ref] = asyncio.ensure_future(self._seed(key_id, ref))
            seeding.add_done_callback(lambda _: self._seeding.pop(ref, None))
        return await asyncio.shield(seeding)

    async def _seed(self, key_id: str, ref: str) -> bool:
        state = await self._credit_states(key_id)
        if state is None:
            return False
        args = [state.remaining, state.epoch, state.refilled_at_s]
        calls = [([self._keyspace.credits(ref)], args)]
        await scripts.run_pipelined(self._redis, scripts.ScriptName.CREDITS_SEED, calls)
        return True
