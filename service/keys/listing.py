"""What a key listing is asked for: the page size, the state filter and the opaque cursor.

A listing walks keys in `(created_at, id)` order, a total order that never changes (neither
column is ever updated), so a page resumes strictly after the last key of the previous one: a
key that existed when paging began is shown exactly once, whatever is created meanwhile.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from service.errors import InvalidInput

DEFAULT_PAGE = 100
MAX_PAGE = 1000
# A cursor is at most 72 characters; anything longer is not one of ours (and is not decoded).
MAX_CURSOR_LENGTH = 100

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CURSOR_VERSION = "k1"


class KeyState(StrEnum):
    """Which keys a listing shows, by their state at the time of the query; each key is in one
    state, decided as `KeyRecord.status` does (revoked, then expired, then disabled)."""

    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"  # and not revoked
    DISABLED = "disabled"  # neither revoked nor expired: enabling it would admit it
    ALL = "all"


@dataclass(frozen=True, slots=True)
class KeyCursor:
    """The position after a key in listing order; `encode` gives the opaque text clients pass."""

    created_at: datetime
    id: uuid.UUID

    def encode(self) -> str:
        # Whole microseconds since the epoch: exactly PostgreSQL's `timestamptz` resolution, so
        # the position round-trips without loss.
        micros = (self.created_at - _EPOCH) // timedelta(microseconds=1)
        text = f"{_CURSOR_VERSION}.{micros}.{self.id.hex}"
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> KeyCursor:
        """The cursor `encode` gave, or `InvalidInput` naming `cursor` for anything else."""
        try:
            if len(text) > MAX_CURSOR_LENGTH:
                raise ValueError
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
            version, micros, key_id = raw.split(".")
            if version != _CURSOR_VERSION or not micros.isdigit() or len(key_id) != 32:
                raise ValueError
            created_at = _EPOCH + timedelta(microseconds=int(micros))
            return cls(created_at, uuid.UUID(hex=key_id))
        except (ValueError, UnicodeDecodeError, binascii.Error, OverflowError):
            raise InvalidInput(
                "cursor: not a cursor this listing gave; pass `next_cursor` as it was returned"
            ) from None


def listing_state(state: KeyState | None, *, include_inactive: bool) -> KeyState:
    """The state asked for: `all=true` / `--all` is `state=all` by its older name, and the two
    may not disagree."""
    if not include_inactive:
        return KeyState.ACTIVE if state is None else state
    if state not in (None, KeyState.ALL):
        raise InvalidInput(f"all: `all` means state=all, not state={state}; pass one of the two")
    return KeyState.ALL


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit: must be 1 to {MAX_PAGE}")
    return limit


def like_prefix(prefix: str) -> str:
    """A LIKE pattern matching names that start with `prefix` as typed: its `\\`, `%` and `_`
    escaped with PostgreSQL's default escape character, then `%`. (No ESCAPE clause: with one,
    the pattern becomes a function call the planner cannot read an index range from.)"""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{escaped}%"
