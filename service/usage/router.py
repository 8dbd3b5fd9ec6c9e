"""`GET /v1/usage`: the calling key's admitted requests per minute, from PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Query
from pydantic import BaseModel

from service.api.deps import PrincipalDep, SessionDep
from service.usage.service import get_usage

router = APIRouter(prefix="/v1", tags=["usage"])


class MinuteUsage(BaseModel):
    minute: datetime
    count: int


class UsageOut(BaseModel):
    key_id: uuid.UUID
    total: int
    minutes: list[MinuteUsage]


@router.get("/usage")
async def usage(
    principal: PrincipalDep,
    session: SessionDep,
    hours: int = Query(24, ge=1, le=24 * 31, description="how far back to look"),
) -> UsageOut:
    """Admitted requests per minute over the last `hours` (this call counts too, once flushed)."""
    since = datetime.now(UTC) - timedelta(hours=hours)
    summary = await get_usage(session=session, key_id=principal.id, since=since)
    return UsageOut(
        key_id=principal.id,
        total=summary.total,
        minutes=[MinuteUsage(minute=minute, count=count) for minute, count in summary.minutes],
    )
