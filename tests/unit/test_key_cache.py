"""The worker's key cache: how long an answer is reused, with and without a fresh change feed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from service.keys.cache import KeyCache
from service.keys.directory import KeyEntry, decode, encode
from service.keys.record import KeyRecord
from tests.unit.records import key_record

TTL, MAX_AGE = 0.5, 300.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _record(n: int = 1) -> KeyRecord:
    return key_record(
        id=uuid.UUID(int=n),
        owner="team",
        scopes=("read",),
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def _cache(clock: Clock, fresh: list[bool], **bounds: int) -> KeyCache:
    return KeyCache(ttl=TTL, max_age=MAX_AGE, is_feed_fresh=lambda: fresh[0], clock=clock, **bounds)


def test_a_known_key_outlives_the_ttl_only_while_the_feed_is_fresh() -> None:
    clock, fresh = Clock(), [True]
    cache = _cache(clock, fresh)
    cache.remember("h", _record(), fetched_at=clock.now)
    clock.now += 60
    assert cache.lookup("h") == (True, _record())
    fresh[0] = False  # the feed fell behind: only the short lifetime holds
    assert cache.lookup("h") == (False, None)
    clock.now = 1000.0 + TTL / 2
    assert cache.lookup("h") == (True, _record())


def test_a_known_key_is_dropped_at_max_age_even_with_a_fresh_feed() -> None:
    clock, fresh = Clock(), [True]
    cache = _cache(clock, fresh)
    cache.remember("h", _record(), fetched_at=clock.now)
    clock.now += MAX_AGE
    assert cache.lookup("h") == (False, None)


def test_an_unknown_key_is_remembered_for_the_ttl_only() -> None:
    clock, fresh = Clock(), [True]
    cache = _cache(clock, fresh)
    cache.remember("h", None, fetched_at=clock.now)
    assert cache.lookup("h") == (True, None)
    clock.now += TTL
    assert cache.lookup("h") == (False, None)


def test_a_flood_of_unknown_keys_never_evicts_a_known_one() -> None:
    clock, fresh = Clock(), [True]
    cache = _cache(clock, fresh, max_unknown=10)
    cache.remember("valid", _record(), fetched_at=clock.now)
    for n in range(1000):
        cache.remember(f"forged-{n}", None, fetched_at=clock.now)
    assert cache.lookup("valid") == (True, _record())


def test_a_full_unknown_table_drops_its_oldest_forged_key_only() -> None:
    clock, fresh = Clock(), [True]
    cache = _cache(clock, fresh, max_unknown=3)
    for name in ("f1", "f2", "f3", "f2", "f4"):  # f2 fetched again: newer than f3
        cache.remember(name, None, fetched_at=clock.now)
    assert [cache.lookup(h)[0] for h in ("f1", "f2", "f3", "f4")] == [False, True, True, True]


def test_a_full_cache_evicts_the_least_recently_fetched_key() -> None:
    clock, fresh = Clock(), [True]
    cache = _cache(clock, fresh, max_known=2)
    cache.remember("a", _record(1), fetched_at=clock.now)
    cache.remember("b", _record(2), fetched_at=clock.now)
    cache.remember("a", _record(1), fetched_at=clock.now)  # fetched again: now the newest
    cache.remember("c", _record(3), fetched_at=clock.now)
    assert [cache.lookup(h)[0] for h in ("a", "b", "c")] == [True, False, True]


def test_forget_drops_one_key_and_clear_drops_all() -> None:
    clock, fresh = Clock(), [True]
    cache = _cache(clock, fresh)
    for name in ("a", "b"):
        cache.remember(name, _record(), fetched_at=clock.now)
    cache.forget("a")
    assert [cache.lookup(h)[0] for h in ("a", "b")] == [False, True]
    cache.clear()
    assert cache.lookup("b") == (False, None)


def test_a_directory_entry_round_trips_and_garbage_is_never_trusted() -> None:
    entry = KeyEntry("h", 7, _record())
    assert decode("h", b"7|" + encode(entry)) == entry
    for garbage in (b"", b"7", b"x|{}", b"7|{", b"7|{}", b"-1|" + encode(entry)):
        assert decode("h", garbage) is None
