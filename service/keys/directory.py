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

from service.batching import TickBatcher
from service.keys.record import KeyRecord
from service.redis import scripts
from service.redis.client import RedisClient
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
    """Reads and fills go out batched: every call of one event-loop tick in one pipeline, at
    most two pipelines of each kind at a time (the shared Redis pool stays free for the rest).
    Any Redis failure reads as "no entry": the caller asks PostgreSQL.
    """

    def __init__(self, redis: RedisClient, keyspace: RedisKeyspace, *, timeout: float) -> None:
        self._redis = redis
        self._keyspace = keyspace
        # A connection wait plus a round trip; a hung Redis costs a cold key this, then SQL.
        self._timeout_s = 2 * timeout
        self._reads: TickBatcher[str, KeyEntry | None] = TickBatcher(self._read, max_in_flight=2)
        self._fills: TickBatcher[KeyEntry, None] = TickBatcher(self._write, max_in_flight=1)

    async def get(self, key_hash: str) -> KeyEntry | None:
        try:
            return await self._reads.submit(key_hash)
        except Exception as error:  # whatever broke, this key is read from PostgreSQL
            logger.debug("key_directory_unavailable", extra={"error": repr(error)})
            return None

    def fill(self, entry: KeyEntry) -> None:
        """Store what PostgreSQL said, in the background: a failure only costs the next worker
        the same query."""
        self._fills.submit(entry).add_done_callback(_retrieve)

    async def put(self, entries: Sequence[KeyEntry]) -> None:
        """Store entries now, in one pipeline; raises when Redis does not take them."""
        if entries:
            await self._write(entries)

    async def aclose(self) -> None:
        await self._fills.drain()

    async def _read(self, hashes: Sequence[str]) -> list[KeyEntry | None]:
        async with (
            asyncio.timeout(self._timeout_s),
            self._redis.pipeline(transaction=False) as pipe,
        ):
            for key_hash in hashes:
                pipe.get(self._keyspace.directory(key_hash))
            raws: list[bytes | None] = await pipe.execute()
        return [
            decode(key_hash, raw) if raw is not None else None
            for key_hash, raw in zip(hashes, raws, strict=True)
        ]

    async def _write(self, entries: Sequence[KeyEntry]) -> list[None]:
        directory = self._keyspace.directory
        calls = [
            ([directory(entry.key_hash)], [entry.version, encode(entry), DIRECTORY_TTL_S])
            for entry in entries
        ]
        async with asyncio.timeout(self._timeout_s + 0.001 * len(entries)):
            await scripts.run_pipelined(self._redis, scripts.ScriptName.DIRECTORY_PUT, calls)
        return [None] * len(entries)


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()  # the directory is a cache: a failed fill is not an error
