"""Pure parts of usage accounting: Redis counters to rows, final minutes, latest minute per key."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from service.usage.flusher import KeyCounts, final_minutes, to_rows
from service.usage.repository import MinuteCount
from service.usage.service import latest_minutes

KEY = uuid.UUID("0b7c1d1e-1111-2222-3333-444455556666")
OTHER = uuid.UUID("9f000000-0000-4000-8000-000000000001")
MINUTE = 1_795_622_880  # a minute boundary (epoch seconds)


def at(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def test_rows_are_utc_minutes_in_order_and_skip_ids_that_are_not_uuids() -> None:
    counts = [
        KeyCounts(str(KEY), {MINUTE: 4, MINUTE - 120: 9}),
        KeyCounts("not-a-uuid", {MINUTE: 5}),
        KeyCounts(str(OTHER), {}),
    ]
    assert to_rows(counts) == [
        MinuteCount(KEY, at(MINUTE - 120), 9),
        MinuteCount(KEY, at(MINUTE), 4),
    ]
    assert to_rows(counts)[0].minute.tzinfo is UTC


def test_final_minutes_are_those_before_the_cut() -> None:
    counts = [
        KeyCounts("a", {MINUTE: 1, MINUTE - 60: 2, MINUTE - 120: 3, MINUTE - 600: 4}),
        KeyCounts("b", {MINUTE: 1, MINUTE - 60: 2}),
    ]
    # The flusher cuts at the current minute less one: that one and the current stay.
    assert final_minutes(counts, MINUTE - 60) == {"a": [MINUTE - 600, MINUTE - 120]}


def test_latest_minute_per_key() -> None:
    rows = [
        MinuteCount(KEY, at(MINUTE - 60), 1),
        MinuteCount(OTHER, at(MINUTE - 600), 1),
        MinuteCount(KEY, at(MINUTE), 1),
        MinuteCount(KEY, at(MINUTE - 120), 1),
    ]
    assert latest_minutes(rows) == {KEY: at(MINUTE), OTHER: at(MINUTE - 600)}
    assert latest_minutes([]) == {}
