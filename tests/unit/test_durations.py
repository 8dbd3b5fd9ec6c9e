"""Durations (`30s`, `15m`, `24h`, `30d`, `1h30m`) for `--expires-in` and `--grace`."""

from __future__ import annotations

from datetime import timedelta

import pytest

from service.durations import parse_duration
from service.errors import InvalidInput


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0s", 0),
        ("30s", 30),
        ("15m", 900),
        ("24h", 86400),
        ("30d", 2_592_000),
        ("1h30m", 5400),
        ("1d2h3m4s", 93784),
        ("90m", 5400),
        (" 2M ", 120),
        ("36500d", 3_153_600_000),
    ],
)
def test_valid_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "text", ["", "10", "s", "1w", "1.5h", "-1h", "1h 30m", "forever", "h1", "1hh", "1y"]
)
def test_invalid_durations_name_the_accepted_forms(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_duration(text)
    assert caught.value.code == "VALIDATION_ERROR"
    assert caught.value.message == (
        f"invalid duration {text!r}: expected forms like 30s, 15m, 24h, 30d, 1h30m"
    )


def test_more_than_a_century_is_refused() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_duration("36501d")
    assert caught.value.message == "invalid duration '36501d': longer than 100 years"
