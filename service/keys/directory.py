"""The Redis key directory: key hash -> the key's record and version, shared by every worker.

A key a worker has not cached costs one Redis round trip here instead of a SQL query (a cold key
among thousands is the common case, not the exception). PostgreSQL stays the source of truth:
writers store an entry after they commit, a worker fills one after a database read, and the
key-change feed (`feed.py`) repairs entries a failed write left behind. An entry is only ever
replaced by a newer version of its key (`directory_put.lua`), so a late fill cannot roll back a
revoke; readers also refuse an entry older than a version the feed has shown them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import TypeAdapter
from redis.asyncio import Redis

from service.keys.record import KeyRecord
from service.redis import scripts
from service.redis.keyspace import RedisKeyspace

logger = logging.getLogger("gatekey.keys.directory")

# An entry not written or read-filled for this long leaves Redis; the next use reads PostgreSQL.
DIRECTORY_TTL_S = 7 * 86400
_RECORD = TypeAdapter(KeyRecord)


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """One key as the directory and the feed carry it: its hash, version and record."""

    key_hash: str
    version: int
    record: KeyRecord


def encode(entry: KeyEntry) -> bytes:
    return _RECORD.dump_json(entry.record)


def decode(key_hash: str, raw: bytes) -> KeyEntry | None:
    """The entry stored as `<version>|<record JSON>`; None for anything else (never trusted)."""
    version, separator, payload = raw.partition(b"|")
    if not separator or not version.isdigit():
        return None
    try:
        record = _RECORD.validate_json(payload)
    except ValueError:
        return None
    return KeyEntry(key_hash, int(version), record)


class KeyDirectory:
    """Reads batched per event-loop tick (one pipeline for every concurrent cold key), writes
    only forward in version. Any Redis failure reads as "no entry": the caller asks PostgreSQL.
    """

    def __init__(self, redis: Redis, keyspace: RedisKeyspace, *, timeout: float) -> None:
        self._redis = redis
        self._keyspace = keyspace
        # A connection wait plus a round trip; a hung Redis costs a cold key this, then SQL.
        self._timeout_s = 2 * timeout
        self._put_script = scripts.register(redis, scripts.ScriptName.DIRECTORY_PUT)
        self._pending: dict[str, asyncio.Future[KeyEntry | None]] = {}

    async def get(self, key_hash: str) -> KeyEntry | None:
        future = self._pending.get(key_hash)
        if future is None:
            if not self._pending:
                asyncio.get_running_loop().call_soon(self._start_batch)
            future = asyncio.get_running_loop().create_future()
            self._pending[key_hash] = future
        return await asyncio.shield(future)

    def _start_batch(self) -> None:
        batch, self._pending = self._pending, {}
        task = asyncio.get_running_loop().create_task(self._read(batch))
        task.add_done_callback(_retrieve)

    async def _read(self, batch: dict[str, asyncio.Future[KeyEntry | None]]) -> None:
        hashes = list(batch)
        raws: Sequence[bytes | None] = [None] * len(hashes)
        try:
            async with asyncio.timeout(self._timeout_s):
                async with self._redis.pipeline(transaction=False) as pipe:
                    for key_hash in hashes:
                        pipe.get(self._keyspace.directory(key_hash))
                    raws = await pipe.execute()
        except Exception as error:  # whatever broke, these keys are read from PostgreSQL
            logger.debug("key_directory_unavailable", extra={"error": repr(error)})
        for key_hash, raw in zip(hashes, raws, strict=True):
            entry = decode(key_hash, raw) if raw is not None else None
            batch[key_hash].set_result(entry)

    async def put(self, entries: Sequence[KeyEntry]) -> None:
        """Store entries (one pipeline); raises when Redis does not take them."""
        if not entries:
            return
        async with asyncio.timeout(self._timeout_s + 0.05 * len(entries)):
            async with self._redis.pipeline(transaction=False) as pipe:
                for entry in entries:
                    await self._put_script(
                        keys=[self._keyspace.directory(entry.key_hash)],
                        args=[entry.version, encode(entry), DIRECTORY_TTL_S],
                        client=pipe,
                    )
                await pipe.execute()


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()
