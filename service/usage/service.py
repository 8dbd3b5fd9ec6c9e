"""Usage use cases: store flushed counts, and read a key's usage for `GET /v1/usage`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from service.usage.repository import ApiKeyUsageRepository, MinuteCount


@dataclass(frozen=True, slots=True)
class UsageSummary:
    """Admitted requests per minute (oldest first) and their `total`."""

    total: int
    minutes: list[tuple[datetime, int]]


async def get_usage(*, session: AsyncSession, key_id: uuid.UUID, since: datetime) -> UsageSummary:
    """The key's stored usage for minutes starting at or after `since` (lags by one flush)."""
    minutes = await ApiKeyUsageRepository(session).minutes_since(key_id, since)
    return UsageSummary(total=sum(count for _, count in minutes), minutes=minutes)


async def record_usage(*, session: AsyncSession, counts: Sequence[MinuteCount]) -> None:
    """Store absolute per-minute counts and move `last_used_at` forward, in one commit."""
    repository = ApiKeyUsageRepository(session)
    await repository.upsert_counts(counts)
    await repository.touch_last_used(latest_minutes(counts))
    await session.commit()


def latest_minutes(counts: Sequence[MinuteCount]) -> dict[uuid.UUID, datetime]:
    """Each key's most recent minute: its new `last_used_at` candidate."""
    latest: dict[uuid.UUID, datetime] = {}
    for row in counts:
        if row.key_id not in latest or latest[row.key_id] < row.minute:
            latest[row.key_id] = row.minute
    return latest
