"""`ApiKeyUsageRepository`: all SQL for `api_key_usage` and `last_used_at`; never commits."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import BigInteger, DateTime, Uuid

from service.usage.models import ApiKeyUsage


@dataclass(frozen=True, slots=True)
class MinuteCount:
    key_id: uuid.UUID
    minute: datetime
    count: int


# Arrays instead of a VALUES list: three parameters whatever the row count. Rows of keys that no
# longer exist are skipped (a deleted key's counters can outlive it in Redis). GREATEST keeps the
# write idempotent: counts are absolute, so replaying a flush can never add twice.
_UPSERT_COUNTS = text(
    """
    INSERT INTO api_key_usage (key_id, minute, count)
    SELECT u.key_id, u.minute, u.count
    FROM unnest(:key_ids, :minutes, :counts) AS u(key_id, minute, count)
    WHERE EXISTS (SELECT 1 FROM api_keys WHERE api_keys.id = u.key_id)
    ORDER BY u.key_id, u.minute
    ON CONFLICT (key_id, minute)
    DO UPDATE SET count = GREATEST(api_key_usage.count, EXCLUDED.count)
    """
).bindparams(
    bindparam("key_ids", type_=ARRAY(Uuid())),
    bindparam("minutes", type_=ARRAY(DateTime(timezone=True))),
    bindparam("counts", type_=ARRAY(BigInteger())),
)

_TOUCH_LAST_USED = text(
    """
    UPDATE api_keys SET last_used_at = u.minute
    FROM unnest(:key_ids, :minutes) AS u(key_id, minute)
    WHERE api_keys.id = u.key_id
      AND (api_keys.last_used_at IS NULL OR api_keys.last_used_at < u.minute)
    """
).bindparams(
    bindparam("key_ids", type_=ARRAY(Uuid())),
    bindparam("minutes", type_=ARRAY(DateTime(timezone=True))),
)


class ApiKeyUsageRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def upsert_counts(self, rows: Sequence[MinuteCount]) -> None:
        """Store absolute counts; an existing row keeps the larger of the two."""
        if not rows:
            return
        await self.session.execute(
            _UPSERT_COUNTS,
            {
                "key_ids": [row.key_id for row in rows],
                "minutes": [row.minute for row in rows],
                "counts": [row.count for row in rows],
            },
        )

    async def touch_last_used(self, latest: Mapping[uuid.UUID, datetime]) -> None:
        """`last_used_at = GREATEST(last_used_at, latest)`, written only where it moves forward."""
        if not latest:
            return
        await self.session.execute(
            _TOUCH_LAST_USED, {"key_ids": list(latest), "minutes": list(latest.values())}
        )

    async def minutes_since(self, key_id: uuid.UUID, since: datetime) -> list[tuple[datetime, int]]:
        statement = (
            select(ApiKeyUsage.minute, ApiKeyUsage.count)
            .where(ApiKeyUsage.key_id == key_id, ApiKeyUsage.minute >= since)
            .order_by(ApiKeyUsage.minute)
        )
        return [(minute, count) for minute, count in await self.session.execute(statement)]
