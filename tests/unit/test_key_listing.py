"""The listing's cursor, LIKE pattern and state parsing: plain values, no database."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from service.errors import InvalidInput
from service.keys.listing import (
    MAX_CURSOR_LENGTH,
    MAX_PAGE,
    KeyCursor,
    KeyState,
    check_limit,
    like_prefix,
    listing_state,
)

LATEST = KeyCursor(
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), uuid.UUID(int=2**128 - 1)
)


@pytest.mark.parametrize(
    "cursor",
    [
        KeyCursor(datetime(2026, 12, 2, 11, 3, 9, 666674, tzinfo=UTC), uuid.uuid4()),
        KeyCursor(datetime(1970, 1, 1, tzinfo=UTC), uuid.UUID(int=0)),
        LATEST,
    ],
)
def test_a_cursor_round_trips_to_the_microsecond(cursor: KeyCursor) -> None:
    text = cursor.encode()
    assert len(text) <= MAX_CURSOR_LENGTH
    assert KeyCursor.decode(text) == cursor


def test_a_cursor_names_an_instant_whatever_its_zone() -> None:
    key_id = uuid.uuid4()
    berlin = datetime(2026, 12, 2, 12, 0, tzinfo=timezone(timedelta(hours=1)))
    utc = datetime(2026, 12, 2, 11, 0, tzinfo=UTC)
    assert KeyCursor(berlin, key_id).encode() == KeyCursor(utc, key_id).encode()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "!!!!",
        _b64(b"hello"),
        _b64(f"k2.1.{uuid.uuid4().hex}".encode()),
        _b64(f"k1.-1.{uuid.uuid4().hex}".encode()),
        _b64(f"k1.{10**20}.{uuid.uuid4().hex}".encode()),
        _b64(f"k1.1.{uuid.uuid4().hex}.extra".encode()),
        _b64(f"k1.1.{uuid.uuid4().hex[:31]}".encode()),
        _b64(b"k1.\xff.\xfe"),
        LATEST.encode() + "A" * (MAX_CURSOR_LENGTH - len(LATEST.encode()) + 1),
    ],
)
def test_anything_but_a_given_cursor_is_invalid_input_naming_cursor(text: str) -> None:
    with pytest.raises(InvalidInput, match=r"^cursor: "):
        KeyCursor.decode(text)


@pytest.mark.parametrize(
    ("prefix", "pattern"),
    [
        ("acme", "acme%"),
        ("50%", "50\\%%"),
        ("a_b", "a\\_b%"),
        ("back\\", "back\\\\%"),
        ("", "%"),
    ],
)
def test_a_prefix_matches_its_wildcards_as_typed(prefix: str, pattern: str) -> None:
    assert like_prefix(prefix) == pattern


def test_all_is_state_all_and_may_not_contradict_state() -> None:
    assert listing_state(None, include_inactive=False) is KeyState.ACTIVE
    assert listing_state(KeyState.REVOKED, include_inactive=False) is KeyState.REVOKED
    assert listing_state(None, include_inactive=True) is KeyState.ALL
    assert listing_state(KeyState.ALL, include_inactive=True) is KeyState.ALL
    with pytest.raises(InvalidInput, match=r"^all: "):
        listing_state(KeyState.ACTIVE, include_inactive=True)


@pytest.mark.parametrize("limit", [0, -1, MAX_PAGE + 1])
def test_a_limit_out_of_range_is_invalid_input_naming_limit(limit: int) -> None:
    with pytest.raises(InvalidInput, match=r"^limit: must be 1 to 1000$"):
        check_limit(limit)
    assert check_limit(MAX_PAGE) == MAX_PAGE
