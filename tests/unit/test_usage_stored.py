"""What a flush writes: only minutes whose count moved, `last_used_at` only when the newest minute
moved, final minutes dropped, ids that cannot be API keys never stored."""

from __future__ import annotations

import pytest

from service.usage.stored import FlushPlan, StoredCounts

KEY = "0b7c1d1e-1111-2222-3333-444455556666"
OTHER = "9f000000-0000-4000-8000-000000000001"
MINUTE = 1_795_622_880  # a minute boundary (epoch seconds)
CUT = MINUTE - 60  # the flusher's cut while MINUTE is current: older minutes are final


def fields(counts: dict[int, int]) -> bytes:
    """A usage hash as the read script returns it: `minute count minute count ...`."""
    return " ".join(f"{minute} {count}" for minute, count in counts.items()).encode()


def rows(plan: FlushPlan) -> list[tuple[str, int, int]]:
    return list(zip(plan.key_ids, plan.minutes, plan.counts, strict=True))


def used(plan: FlushPlan) -> list[tuple[str, int]]:
    return list(zip(plan.used_key_ids, plan.used_minutes, strict=True))


def test_a_first_read_writes_every_minute_and_the_newest_as_last_use() -> None:
    plan = StoredCounts().plan(
        [KEY, OTHER], [fields({MINUTE - 120: 9, MINUTE: 4}), fields({})], CUT
    )
    assert rows(plan) == [(KEY, MINUTE - 120, 9), (KEY, MINUTE, 4)]
    assert used(plan) == [(KEY, MINUTE)]
    assert plan.final == {KEY: [MINUTE - 120, 9]}


def test_once_stored_only_minutes_whose_count_moved_are_written() -> None:
    stored = StoredCounts()
    stored.remember(stored.plan([KEY], [fields({MINUTE - 60: 7, MINUTE: 1})], CUT))

    same = stored.plan([KEY], [fields({MINUTE - 60: 7, MINUTE: 1})], CUT)
    assert (rows(same), used(same), same.final) == ([], [], {})
    grown = stored.plan([KEY], [fields({MINUTE - 60: 7, MINUTE: 5})], CUT)
    assert (rows(grown), used(grown)) == ([(KEY, MINUTE, 5)], [])
    stored.remember(grown)
    # The next minute starts: written, and it is the key's new last use.
    later = stored.plan([KEY], [fields({MINUTE - 60: 7, MINUTE: 5, MINUTE + 60: 1})], CUT + 60)
    assert (rows(later), used(later)) == ([(KEY, MINUTE + 60, 1)], [(KEY, MINUTE + 60)])
    assert later.final == {KEY: [MINUTE - 60, 7]}  # stored before, so only dropped


def test_a_plan_not_remembered_is_written_again() -> None:
    """A store that failed (or whose commit is in doubt) leaves nothing remembered."""
    stored = StoredCounts()
    stored.plan([KEY], [fields({MINUTE: 3})], CUT)
    assert rows(stored.plan([KEY], [fields({MINUTE: 3})], CUT)) == [(KEY, MINUTE, 3)]


def test_ids_that_are_not_uuids_are_never_stored_but_their_final_minutes_go() -> None:
    stored = StoredCounts()
    for _ in range(2):  # never remembered: checked, and skipped, on every read
        plan = stored.plan(["not-a-uuid"], [fields({MINUTE - 300: 5, MINUTE: 2})], CUT)
        assert (rows(plan), used(plan)) == ([], [])
        assert plan.final == {"not-a-uuid": [MINUTE - 300, 5]}
        stored.remember(plan)
    assert len(stored) == 0


def test_keys_whose_minutes_are_all_over_are_forgotten() -> None:
    stored = StoredCounts()
    stored.remember(stored.plan([KEY, OTHER], [fields({MINUTE: 1})] * 2, CUT))
    assert len(stored) == 2
    # KEY is read once its minute is final: dropped from Redis, so from memory too.
    stored.remember(stored.plan([KEY], [fields({MINUTE: 1})], CUT + 120))
    assert len(stored) == 1
    # OTHER went idle: a minute after, the trim lets it go (its next read writes it again).
    stored.remember(stored.plan([], [], CUT + 180))
    assert len(stored) == 0


@pytest.mark.parametrize("max_keys", [1, 2])
def test_past_the_bound_new_keys_are_written_on_every_flush(max_keys: int) -> None:
    stored = StoredCounts(max_keys=max_keys)
    read = [fields({MINUTE: 1})] * 2
    stored.remember(stored.plan([KEY, OTHER], read, CUT))
    again = stored.plan([KEY, OTHER], read, CUT)
    assert rows(again) == ([] if max_keys == 2 else [(OTHER, MINUTE, 1)])
    assert len(stored) == max_keys
