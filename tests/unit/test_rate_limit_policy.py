"""Rate-limit strings: accepted forms, rejected forms and the canonical `str()` round trip."""

from __future__ import annotations

import pytest

from service.errors import InvalidInput
from service.ratelimit.credits import Credits, check_credits, credits_of, parse_refill
from service.ratelimit.limits import limit_set
from service.ratelimit.policy import (
    RateLimitPolicy,
    canonical_rate_limits,
    parse_rate_limit,
    parse_rate_limits,
)


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


def test_a_shadow_limit_parses_and_prints_back() -> None:
    assert parse_rate_limit(" 1000 / days  shadow ") == RateLimitPolicy(1000, 86400, shadow=True)
    assert str(RateLimitPolicy(1000, 86400, shadow=True)) == "1000/day shadow"


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        (["1/second", "2/second"], "rate_limits: more than one enforced limit per second"),
        (["1/day shadow", "2/day shadow"], "rate_limits: more than one shadow limit per day"),
        ([f"{n}/minute" for n in range(1, 10)], "rate_limits: at most 8 limits, got 9"),
        (["1/second", "shadow"], "rate_limits: invalid rate limit 'shadow'"),
        (["1/second shadowy"], "rate_limits: invalid rate limit '1/second shadowy'"),
    ],
)
def test_bad_limit_sets_name_the_field(texts: list[str], message: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_rate_limits(texts)
    assert raised.value.message.startswith(message)


def test_an_enforced_and_a_shadow_limit_may_share_a_window() -> None:
    texts = ["100/minute", " 50/minute shadow", "10000/day"]
    assert canonical_rate_limits(texts) == ["100/minute", "50/minute shadow", "10000/day"]


def test_the_default_applies_when_a_key_enforces_none_of_its_own() -> None:
    default = RateLimitPolicy(1000, 60)
    shadow_only = limit_set((RateLimitPolicy(5, 60, shadow=True),), default=default)
    assert [str(limit.policy) for limit in shadow_only.limits] == ["1000/minute", "5/minute shadow"]
    assert shadow_only.policy_header == '"default";q=1000;w=60'
    own = limit_set((RateLimitPolicy(10, 1), RateLimitPolicy(10000, 86400)), default=default)
    assert own.policy_header == '"key-second";q=10;w=1, "key-day";q=10000;w=86400'


@pytest.mark.parametrize(
    ("text", "message"),
    [("1000/day shadow", "refill: a refill cannot be shadow"), ("5/week", "refill: invalid")],
)
def test_bad_refills_name_the_field(text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_refill(text)
    assert raised.value.message.startswith(message)


def test_credits_are_bounded() -> None:
    assert check_credits(0) == 0
    with pytest.raises(InvalidInput, match="credits: must be 0 to"):
        check_credits(-1)
    assert credits_of(5, "10/second", 3) == Credits(3, 5, 10, 1)
    assert credits_of(None, None, 0) is None
