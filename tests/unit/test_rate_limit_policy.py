"""Rate-limit strings: accepted forms, rejected forms and the canonical `str()` round trip."""

from __future__ import annotations

import pytest

from service.errors import InvalidInput
from service.ratelimit.policy import RateLimitPolicy, parse_rate_limit


@pytest.mark.parametrize(
    ("text", "limit", "window_s"),
    [
        ("1/second", 1, 1),
        ("100/minute", 100, 60),
        ("5000/hour", 5000, 3600),
        ("7/day", 7, 86400),
        ("100/minutes", 100, 60),
        ("2/seconds", 2, 1),
        (" 100 / minute ", 100, 60),
        ("999999999/day", 999_999_999, 86400),
        ("0010/minute", 10, 60),
    ],
)
def test_valid_forms(text: str, limit: int, window_s: int) -> None:
    assert parse_rate_limit(text) == RateLimitPolicy(limit, window_s)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "100",
        "/minute",
        "0/minute",
        "-1/minute",
        "1.5/minute",
        "abc/minute",
        "100/week",
        "100/min",
        "100 per minute",
        "100/minute/hour",
        "1000000000/minute",
        "100//minute",
    ],
)
def test_invalid_forms_raise_invalid_input_naming_the_forms(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_rate_limit(text)
    assert caught.value.code == "VALIDATION_ERROR"
    assert repr(text) in caught.value.message
    assert "N/second, N/minute, N/hour or N/day" in caught.value.message


@pytest.mark.parametrize(
    ("policy", "text"),
    [
        (RateLimitPolicy(1, 1), "1/second"),
        (RateLimitPolicy(100, 60), "100/minute"),
        (RateLimitPolicy(5000, 3600), "5000/hour"),
        (RateLimitPolicy(7, 86400), "7/day"),
    ],
)
def test_str_round_trip(policy: RateLimitPolicy, text: str) -> None:
    assert str(policy) == text
    assert parse_rate_limit(str(policy)) == policy


def test_plural_and_spaced_forms_normalise() -> None:
    assert str(parse_rate_limit(" 100 / minutes ")) == "100/minute"


def test_policy_is_immutable_and_hashable() -> None:
    policy = RateLimitPolicy(100, 60)
    with pytest.raises(AttributeError):
        policy.limit = 5  # type: ignore[misc]
    assert {policy, RateLimitPolicy(100, 60)} == {policy}
