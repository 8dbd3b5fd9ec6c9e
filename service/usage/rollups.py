"""Usage rolled up per minute, hour or day for a key or an owner: what an admin reads, over HTTP
(`/v1/admin/keys/{key_id}/usage`, `/v1/admin/owners/{owner}/usage`) and from `gatekey usage`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from service.durations import parse_duration
from service.errors import InvalidInput, NotFound
from service.usage.repository import ApiKeyUsageRepository

# At most a week of minutes per answer (420 days of hours, any number of days): enough for any
# chart or table, and a bound on the rows one request turns into JSON.
MAX_BUCKETS = 7 * 24 * 60


class Granularity(StrEnum):
    """The width of a bucket; each value is a `date_trunc` unit."""

    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"

    @property
    def width(self) -> timedelta:
        return _WIDTHS[self]


_WIDTHS = {
    Granularity.MINUTE: timedelta(minutes=1),
    Granularity.HOUR: timedelta(hours=1),
    Granularity.DAY: timedelta(days=1),
}


@dataclass(frozen=True, slots=True)
class UsageBucket:
    """Admitted requests in the bucket starting at `start` (UTC)."""

    start: datetime
    count: int


@dataclass(frozen=True, slots=True)
class UsageSeries:
    """The buckets with requests since `since`, oldest first, and their `total`. The first bucket
    holds only the minutes from `since` on."""

    since: datetime
    by: Granularity
    total: int
    buckets: list[UsageBucket]


def usage_window(since: str, by: Granularity, *, retention: timedelta) -> timedelta:
    """How far back `since` (a duration such as `24h`) reaches: longer than zero, no longer
    than the retention (older rows are gone), and at most `MAX_BUCKETS` buckets of `by`.
    Errors name the field, as the HTTP query and the CLI option are both called `since`."""
    try:
        window = parse_duration(since)
    except InvalidInput as exc:
        raise InvalidInput(f"since: {exc.message}") from None
    if not window:
        raise InvalidInput("since: must be longer than 0s")
    if window > retention:
        raise InvalidInput(
            f"since: {since} reaches past USAGE_RETENTION ({_text(retention)}), "
            "before which usage is deleted"
        )
    if window / by.width > MAX_BUCKETS:
        raise InvalidInput(
            f"since: {since} by {by} is more than {MAX_BUCKETS} buckets; "
            "use a wider `by` or a shorter `since`"
        )
    return window


async def key_usage(
    *, session: AsyncSession, key_id: uuid.UUID, window: timedelta, by: Granularity
) -> UsageSeries:
    """One key's usage over the last `window`; NotFound for a key that does not exist."""
    repository = ApiKeyUsageRepository(session)
    if not await repository.key_exists(key_id):
        raise NotFound(f"no key with id {key_id}")
    since = datetime.now(UTC) - window
    return _series(since, by, await repository.key_buckets(key_id, since, by.value))


async def owner_usage(
    *, session: AsyncSession, owner: str, window: timedelta, by: Granularity
) -> UsageSeries:
    """The usage of every key of `owner` (revoked and expired ones too), summed per bucket.
    NotFound when no key names the owner: owners exist only through their keys, so a zero
    series would hide a misspelt name."""
    repository = ApiKeyUsageRepository(session)
    if not await repository.owner_exists(owner):
        raise NotFound(f"no key has owner {owner!r}")
    since = datetime.now(UTC) - window
    return _series(since, by, await repository.owner_buckets(owner, since, by.value))


def _series(since: datetime, by: Granularity, rows: list[tuple[datetime, int]]) -> UsageSeries:
    buckets = [UsageBucket(start, count) for start, count in rows]
    return UsageSeries(since, by, sum(b.count for b in buckets), buckets)


def _text(duration: timedelta) -> str:
    """A duration as the settings write it (`90d`, `36h`, `90s`)."""
    seconds = int(duration.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
