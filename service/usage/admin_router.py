"""`/v1/admin/keys/{key_id}/usage` and `/v1/admin/owners/{owner}/usage`: any key's or owner's
usage per minute, hour or day, for keys with scope `admin` (`gatekey usage` over HTTP)."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from service.api.deps import AdminDep, SessionDep, StateDep
from service.durations import parse_duration
from service.usage.rollups import (
    Granularity,
    UsageBucket,
    key_usage,
    owner_usage,
    usage_window,
)

router = APIRouter(prefix="/v1/admin", tags=["admin"])

SinceQuery = Annotated[
    str,
    Query(
        max_length=32,
        description="how far back: a duration such as 90m, 24h, 7d (at most USAGE_RETENTION)",
    ),
]
ByQuery = Annotated[Granularity, Query(description="bucket width, cut in UTC")]


class UsageSeriesOut(BaseModel):
    # The start of the window; the first bucket holds only the minutes from here on.
    since: datetime
    by: Granularity
    total: int
    # Oldest first; buckets without requests are left out.
    buckets: list[UsageBucket]


class KeyUsageOut(UsageSeriesOut):
    key_id: uuid.UUID


class OwnerUsageOut(UsageSeriesOut):
    owner: str


@router.get("/keys/{key_id}/usage")
async def key_usage_report(
    key_id: uuid.UUID,
    admin: AdminDep,
    session: SessionDep,
    state: StateDep,
    since: SinceQuery = "24h",
    by: ByQuery = Granularity.HOUR,
) -> KeyUsageOut:
    """One key's admitted requests per bucket (revoked and expired keys too)."""
    window = usage_window(since, by, retention=parse_duration(state.settings.usage_retention))
    series = await key_usage(session=session, key_id=key_id, window=window, by=by)
    return KeyUsageOut(key_id=key_id, **asdict(series))


@router.get("/owners/{owner:path}/usage")
async def owner_usage_report(
    owner: str,
    admin: AdminDep,
    session: SessionDep,
    state: StateDep,
    since: SinceQuery = "24h",
    by: ByQuery = Granularity.HOUR,
) -> OwnerUsageOut:
    """The admitted requests of every key of an owner, summed per bucket; 404 when no key has
    that owner."""
    window = usage_window(since, by, retention=parse_duration(state.settings.usage_retention))
    series = await owner_usage(session=session, owner=owner, window=window, by=by)
    return OwnerUsageOut(owner=owner, **asdict(series))
