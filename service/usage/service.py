"""Usage use cases: store flushed counts, read a key's usage for `GET /v1/usage`, delete what
outlived the retention."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from service.usage.repository import ApiKeyUsageRepository
from service.usage.stored import FlushPlan


@dataclass(frozen=True, slots=True)
class UsageSummary:
    """Admitted requests per minute (oldest first) and their `total`."""

    total: int
    minutes: list[tuple[datetime, int]]


async def get_usage(*, session: AsyncSession, key_id: uuid.UUID, since: datetime) -> UsageSummary:
    """The key's stored usage for minutes starting at or after `since` (lags by one flush)."""
    minutes = await ApiKeyUsageRepository(session).minutes_since(key_id, since)
    return UsageSummary(total=sum(count for _, count in minutes), minutes=minutes)


async def record_usage(*, session: AsyncSession, plan: FlushPlan) -> None:
    """Store a flush's absolute per-minute counts, move `last_used_at` forward and persist the
    credits left, in one commit."""
    repository = ApiKeyUsageRepository(session)
    await repository.upsert_counts(plan.key_ids, plan.minutes, plan.counts)
    await repository.touch_last_used(plan.used_key_ids, plan.used_minutes)
    credits = plan.credits
    await repository.store_credits(
        credits.key_ids, credits.remaining, credits.epochs, credits.refilled
    )
    await session.commit()


async def prune_expired(
    *, session: AsyncSession, retention: timedelta, limit: int, timeout_ms: int
) -> int:
    """Delete at most `limit` rows of minutes older than `retention`, in one commit; how many.
    A bounded batch holds its row locks and WAL for a moment, not for a whole backlog."""
    deleted = await ApiKeyUsageRepository(session).delete_expired(
        retention, limit=limit, timeout_ms=timeout_ms
    )
    await session.commit()
    return deleted
