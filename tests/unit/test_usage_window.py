"""`usage_window` (the reports' `since` and `by`) and the `USAGE_RETENTION` setting."""

from __future__ import annotations

from datetime import timedelta

import pytest

from service.config import SettingsError, load_settings
from service.durations import parse_duration
from service.errors import InvalidInput
from service.usage.rollups import MAX_BUCKETS, Granularity, usage_window

RETENTION = timedelta(days=90)


@pytest.mark.parametrize(
    ("since", "by", "window"),
    [
        ("24h", Granularity.HOUR, timedelta(hours=24)),
        ("90m", Granularity.MINUTE, timedelta(minutes=90)),
        ("7d", Granularity.MINUTE, timedelta(days=7)),  # exactly MAX_BUCKETS minutes
        ("1d12h", Granularity.HOUR, timedelta(hours=36)),
        ("90d", Granularity.DAY, RETENTION),
        ("90d", Granularity.HOUR, RETENTION),
    ],
)
def test_accepted_windows(since: str, by: Granularity, window: timedelta) -> None:
    assert usage_window(since, by, retention=RETENTION) == window


@pytest.mark.parametrize(
    ("since", "by", "message"),
    [
        ("yesterday", Granularity.HOUR, "since: invalid duration 'yesterday'"),
        ("", Granularity.HOUR, "since: invalid duration ''"),
        ("-1h", Granularity.HOUR, "since: invalid duration '-1h'"),
        ("0s", Granularity.HOUR, "since: must be longer than 0s"),
        ("91d", Granularity.DAY, "since: 91d reaches past USAGE_RETENTION (90d)"),
        ("7d1m", Granularity.MINUTE, f"more than {MAX_BUCKETS} buckets"),
    ],
)
def test_refused_windows_name_the_field(since: str, by: Granularity, message: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        usage_window(since, by, retention=RETENTION)
    assert message in raised.value.message
    assert raised.value.message.startswith("since: ")


def test_retention_is_written_back_as_the_settings_write_it() -> None:
    with pytest.raises(InvalidInput, match=r"USAGE_RETENTION \(36h\)"):
        usage_window("2d", Granularity.DAY, retention=timedelta(hours=36))


def test_usage_retention_defaults_to_90_days_and_must_be_a_positive_duration() -> None:
    assert parse_duration(load_settings().usage_retention) == RETENTION
    assert load_settings(usage_retention="1d12h").usage_retention == "1d12h"
    for bad, says in (("0d", "longer than 0s"), ("3 months", "invalid duration")):
        with pytest.raises(SettingsError, match=f"USAGE_RETENTION: Value error, .*{says}"):
            load_settings(usage_retention=bad)
