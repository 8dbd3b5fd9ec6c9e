"""`StoredCounts`: what this process last stored per key and minute, and the `FlushPlan` it makes
of one chunk of Redis counters: only minutes whose count moved are written again."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from service.redis.keyspace import key_id_of

logger = logging.getLogger("gatekey.usage")

# Keys remembered at most; past it, a new key is written on every flush as if never stored.
# About 400 bytes each: at most ~20 MB, and only while that many keys are in use at once.
MAX_REMEMBERED_KEYS = 50_000


@dataclass(slots=True)
class CreditCounts:
    """Keys' credits as Redis held them at the read, in parallel columns (see `FlushPlan`)."""

    key_ids: list[str] = field(default_factory=list)
    remaining: list[int] = field(default_factory=list)
    epochs: list[int] = field(default_factory=list)
    refilled: list[int] = field(default_factory=list)

    def add(self, ref: str, state: Sequence[bytes | None]) -> None:
        """`state`: the credits hash's `r`, `e`, `t` (all None: the key has no credits)."""
        if state[0] is None:
            return
        self.key_ids.append(key_id_of(ref))
        self.remaining.append(int(state[0]))
        self.epochs.append(int(state[1] or 0))
        self.refilled.append(int(state[2] or 0))


@dataclass(slots=True)
class FlushPlan:
    """One chunk's work, in parallel columns that feed SQL array parameters as they are.

    `key_ids`/`minutes`/`counts`: the rows to upsert (minute epoch seconds, absolute count);
    `used_key_ids`/`used_minutes`: keys whose newest minute moved, for `last_used_at`; `final`:
    per key ref, the minute, count pairs read that can no longer grow, to drop once stored;
    `seen`: per key ref, the counts of the other minutes, stored once the plan is; `keys_read`:
    how many keys it covers.
    """

    keys_read: int = 0
    key_ids: list[str] = field(default_factory=list)
    minutes: list[int] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    used_key_ids: list[str] = field(default_factory=list)
    used_minutes: list[int] = field(default_factory=list)
    final: dict[str, list[int]] = field(default_factory=dict)
    seen: dict[str, dict[int, int]] = field(default_factory=dict)
    credits: CreditCounts = field(default_factory=CreditCounts)


class StoredCounts:
    """Per key, the counts this process stored for minutes not yet over.

    PostgreSQL's count is never below one stored (GREATEST only raises it), whichever process
    stored since: a minute read again with a count no higher needs no write. What is forgotten
    is merely written again, so the bound and the trimming cost a write, never a count.
    """

    def __init__(self, *, max_keys: int = MAX_REMEMBERED_KEYS) -> None:
        self._by_key: dict[str, dict[int, int]] = {}
        self._max_keys = max_keys
        self._final_before = 0

    def __len__(self) -> int:
        return len(self._by_key)

    def plan(self, refs: Sequence[str], hashes: Sequence[bytes], final_before: int) -> FlushPlan:
        """The work the counters read still need done; `refs` name the keys as the dirty set
        does (`usage_ref`), `hashes` hold each key's usage hash as the read script returns it:
        `minute count minute count ...`."""
        self._trim(final_before)
        plan = FlushPlan(keys_read=len(refs))
        for ref, usage in zip(refs, hashes, strict=True):
            stored = self._by_key.get(ref)
            # Checked until remembered: an id that is not a UUID never is, nor is it stored.
            if stored is None and _is_uuid(key_id_of(ref)):
                stored = {}
            _plan_key(plan, ref, usage, stored, final_before)
        return plan

    def remember(self, plan: FlushPlan) -> None:
        """Call once the plan's writes are committed."""
        for key_id, counts in plan.seen.items():
            if not counts:
                self._by_key.pop(key_id, None)
            elif key_id in self._by_key or len(self._by_key) < self._max_keys:
                self._by_key[key_id] = counts

    def _trim(self, final_before: int) -> None:
        """Once per minute, forget minutes that were already over at the previous cut: every key
        read since had them dropped; the others are idle, and their next read writes them again."""
        if final_before == self._final_before:
            return
        cut, self._final_before = self._final_before, final_before
        trimmed = ((k, {m: c for m, c in v.items() if m >= cut}) for k, v in self._by_key.items())
        self._by_key = {key_id: counts for key_id, counts in trimmed if counts}


def _plan_key(
    plan: FlushPlan,
    ref: str,
    usage: bytes,
    stored: dict[int, int] | None,
    final_before: int,
) -> None:
    """One key's share of the plan; `stored` is None for an id that cannot be an API key, whose
    minutes are only dropped. One pass over the fields: it runs for every dirty key."""
    key_id = key_id_of(ref)
    seen: dict[int, int] = {}
    final: list[int] = []
    newest = 0
    fields = usage.split()
    for minute_text, count_text in zip(fields[::2], fields[1::2], strict=True):
        minute, count = int(minute_text), int(count_text)
        if minute < final_before:
            final += (minute, count)
        else:
            seen[minute] = count
        if stored is not None and count > stored.get(minute, 0):
            plan.key_ids.append(key_id)
            plan.minutes.append(minute)
            plan.counts.append(count)
            newest = max(newest, minute)
    if final:
        plan.final[ref] = final
    if stored is not None:
        plan.seen[ref] = seen
        # Its last use moved only if the newest minute written is newer than any stored.
        if newest > max(stored, default=0):
            plan.used_key_ids.append(key_id)
            plan.used_minutes.append(newest)


def _is_uuid(key_id: str) -> bool:
    try:
        uuid.UUID(key_id)
    except ValueError:
        logger.warning("usage_key_id_not_a_uuid", extra={"key_id": key_id})
        return False
    return True
