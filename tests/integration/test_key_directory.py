"""The long key cache and the Redis key directory never outlive a change in PostgreSQL.

Each test changes a key behind the fast paths' back (no announcement, no directory write, or a
directory entry tampered with) and proves that the change still wins: the first feed read after
the commit applies it, and a directory entry older than what the feed read is never trusted.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx
from fastapi import FastAPI
from redis.asyncio import Redis

from service.config import Settings
from service.db import Database
from service.keys.directory import KeyEntry, decode, encode
from service.keys.format import KeyFormat
from service.keys.record import KeyRecord
from service.redis.keyspace import RedisKeyspace
from tests.factories import (
    create_key,
    key_header,
    revoke_key,
    running_app,
    state_of,
)

# Generous: a feed read takes milliseconds; this only stops a broken test from hanging.
DEADLINE_S = 30.0
T = TypeVar("T")


def _directory_name(settings: Settings, plaintext: str) -> str:
    key_hash = KeyFormat.from_settings(settings).hash(plaintext)
    return RedisKeyspace(settings.redis_namespace).directory(key_hash)


async def _polled_until(probe: Callable[[], Awaitable[T]], is_done: Callable[[T], bool]) -> T:
    """`probe()` every 10 ms until its value is done (bounded by DEADLINE_S)."""
    async with asyncio.timeout(DEADLINE_S):
        for _ in itertools.count():
            value = await probe()
            if is_done(value):
                return value
            await asyncio.sleep(0.01)
    raise AssertionError("unreachable")


async def _next_feed_read(app: FastAPI) -> None:
    """Return once a feed read that began after this call has finished."""
    feed = state_of(app).key_feed
    asked_at = time.monotonic()

    async def synced_at() -> float:
        return feed.synced_at

    await _polled_until(synced_at, lambda at: at > asked_at)


async def _stored_entry(redis: Redis, name: str, key_hash: str) -> KeyEntry | None:
    raw = await redis.get(name)
    if raw is None:
        return None
    assert isinstance(raw, bytes)  # the tests' clients do not decode responses
    return decode(key_hash, raw)


async def test_an_unannounced_revoke_is_refused_after_the_next_feed_read(
    api: tuple[FastAPI, httpx.AsyncClient], database: Database, settings: Settings
) -> None:
    app, client = api
    issued = await create_key(database, settings)
    assert (await client.get("/v1/whoami", headers=key_header(issued.plaintext))).status_code == 200
    # No announcement and no directory write: as if pub/sub and Redis writes were both lost.
    await revoke_key(database, issued.record.id)
    await _next_feed_read(app)
    response = await client.get("/v1/whoami", headers=key_header(issued.plaintext))
    assert (response.status_code, response.json()["code"]) == (401, "REVOKED")


async def test_a_cached_key_is_reused_past_the_short_ttl_while_the_feed_is_fresh(
    api: tuple[FastAPI, httpx.AsyncClient], database: Database, settings: Settings
) -> None:
    app, client = api
    issued = await create_key(database, settings)
    hits = state_of(app).metrics.key_cache_requests.labels("hit")
    assert (await client.get("/v1/whoami", headers=key_header(issued.plaintext))).status_code == 200
    # Past KEY_CACHE_TTL (0.5 s): the short lifetime alone would have dropped the entry.
    await asyncio.sleep(settings.key_cache_ttl * 2)
    await _next_feed_read(app)
    before = hits._value.get()
    assert (await client.get("/v1/whoami", headers=key_header(issued.plaintext))).status_code == 200
    assert hits._value.get() == before + 1


async def test_a_deleted_directory_entry_is_filled_again_from_postgresql(
    api: tuple[FastAPI, httpx.AsyncClient], database: Database, settings: Settings, redis: Redis
) -> None:
    _, client = api
    issued = await create_key(database, settings)
    name = _directory_name(settings, issued.plaintext)
    key_hash = KeyFormat.from_settings(settings).hash(issued.plaintext)
    await redis.delete(name)
    assert (await client.get("/v1/whoami", headers=key_header(issued.plaintext))).status_code == 200
    entry = await _polled_until(lambda: _stored_entry(redis, name, key_hash), bool)
    assert entry is not None
    assert entry.version == 1
    assert entry.record.id == issued.record.id


async def test_a_stale_directory_entry_never_admits_a_revoked_key(
    api: tuple[FastAPI, httpx.AsyncClient], database: Database, settings: Settings, redis: Redis
) -> None:
    app, client = api
    issued = await create_key(database, settings)
    key_hash = KeyFormat.from_settings(settings).hash(issued.plaintext)
    name = _directory_name(settings, issued.plaintext)
    stale = KeyEntry(key_hash, 1, issued.record)
    await revoke_key(database, issued.record.id)
    await _next_feed_read(app)
    # The directory still says "valid, version 1" (a revoke whose Redis write failed, say).
    await redis.set(name, b"1|" + _record_json(issued.record))
    state_of(app).verifier.invalidate()
    response = await client.get("/v1/whoami", headers=key_header(issued.plaintext))
    assert (response.status_code, response.json()["code"]) == (401, "REVOKED")
    # Healed: the refused entry was replaced by PostgreSQL's newer version.
    entry = await _polled_until(lambda: _stored_entry(redis, name, key_hash), lambda e: e != stale)
    assert entry is not None
    assert (entry.version, entry.record.revoked_at is not None) == (2, True)


async def test_a_new_worker_refuses_a_stale_entry_from_before_it_started(
    database: Database, settings: Settings, redis: Redis
) -> None:
    issued = await create_key(database, settings)
    name = _directory_name(settings, issued.plaintext)
    await redis.set(name, b"1|" + _record_json(issued.record))
    await revoke_key(database, issued.record.id)  # the directory is not told
    async with running_app(settings) as (app, client):
        for _ in range(2):  # before and after the worker's first feed read
            response = await client.get("/v1/whoami", headers=key_header(issued.plaintext))
            assert (response.status_code, response.json()["code"]) == (401, "REVOKED")
            await _next_feed_read(app)


async def test_a_flushed_directory_heals_and_keeps_every_answer(
    api: tuple[FastAPI, httpx.AsyncClient], database: Database, settings: Settings, redis: Redis
) -> None:
    app, client = api
    valid = await create_key(database, settings)
    revoked = await create_key(database, settings)
    await revoke_key(database, revoked.record.id)
    await _next_feed_read(app)
    names = [_directory_name(settings, k.plaintext) for k in (valid, revoked)]
    for _ in range(2):  # once from PostgreSQL, once from the refilled directory
        state_of(app).verifier.invalidate()
        await redis.delete(*names)
        ok = await client.get("/v1/whoami", headers=key_header(valid.plaintext))
        refused = await client.get("/v1/whoami", headers=key_header(revoked.plaintext))
        assert (ok.status_code, refused.status_code) == (200, 401)
        assert refused.json()["code"] == "REVOKED"


async def test_a_key_created_on_one_worker_is_admitted_at_once_by_another(
    api: tuple[FastAPI, httpx.AsyncClient], database: Database, settings: Settings
) -> None:
    _, client = api
    admin = await create_key(database, settings, scopes=["admin"])
    async with running_app(settings) as (_, other):
        created = await client.post(
            "/v1/admin/keys", json={"name": "fresh"}, headers=key_header(admin.plaintext)
        )
        assert created.status_code == 201
        response = await other.get("/v1/whoami", headers=key_header(created.json()["key"]))
    assert (response.status_code, response.json()["id"]) == (200, created.json()["id"])


def _record_json(record: KeyRecord) -> bytes:
    return encode(KeyEntry("", 1, record))
