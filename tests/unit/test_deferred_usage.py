"""Deferred usage without Redis: counts per key and minute, and the bound on what a worker holds."""

from __future__ import annotations

import logging

import pytest
from redis.asyncio import Redis

from service.ratelimit.deferred_usage import DeferredUsage
from service.redis.keyspace import RedisKeyspace


def deferred(
    max_slots: int, now: list[float], dropped: list[tuple[str, int]] | None = None
) -> DeferredUsage:
    # The client is never contacted: counting and bounding happen in the process.
    return DeferredUsage(
        Redis(port=1),
        RedisKeyspace(),
        ttl_s=60,
        clock=lambda: now[0],
        max_slots=max_slots,
        on_dropped=lambda reason, count: (dropped if dropped is not None else []).append(
            (reason, count)
        ),
    )


def test_slots_are_keys_times_minutes_and_the_bound_drops_only_new_ones(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [120.0]
    dropped: list[tuple[str, int]] = []
    usage = deferred(3, now, dropped)
    for key_id in ("a", "a", "b"):
        usage.add(key_id)
    now[0] = 185.0
    with caplog.at_level(logging.WARNING, logger="gatekey.ratelimit"):
        usage.add("a")  # a new minute of a known key: the third slot
        usage.add("c")  # a fourth slot: dropped
        usage.add("a")  # an existing slot: still counted
        usage.add("d")  # dropped
    assert (usage.held(), usage.dropped) == (5, 2)
    assert dropped == [("full", 1), ("full", 1)]  # what gatekey_usage_dropped_total counts
    assert [r.message for r in caplog.records] == ["ratelimit_deferred_usage_full"]
