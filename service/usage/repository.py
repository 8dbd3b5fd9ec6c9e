"""`ApiKeyUsageRepository`: all SQL for `api_key_usage`, `last_used_at` and the persisted credits;
never commits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import BigInteger, Interval, Uuid

from service.usage.models import ApiKeyUsage

# Arrays instead of a VALUES list: three parameters whatever the row count, and the driver
# encodes plain lists of strings and integers (no per-row UUID or datetime objects). Rows of keys
# that no longer exist are skipped (a deleted key's counters can outlive it in Redis). GREATEST
# keeps the write idempotent: counts are absolute, so replaying a flush can never add twice.
_UPSERT_COUNTS = text(
    """
    INSERT INTO api_key_usage (key_id, minute, count)
    SELECT u.key_id, to_timestamp(u.minute), u.count
    FROM unnest(:key_ids, :minutes, :counts) AS u(key_id, minute, count)
    WHERE EXISTS (SELECT 1 FROM api_keys WHERE api_keys.id = u.key_id)
    ORDER BY u.key_id, u.minute
    ON CONFLICT (key_id, minute)
    DO UPDATE SET count = GREATEST(api_key_usage.count, EXCLUDED.count)
    """
).bindparams(
    bindparam("key_ids", type_=ARRAY(Uuid(as_uuid=False))),
    bindparam("minutes", type_=ARRAY(BigInteger())),
    bindparam("counts", type_=ARRAY(BigInteger())),
)

# Only `last_used_at`: the trigger that bumps `api_keys.version` ignores that column alone.
_TOUCH_LAST_USED = text(
    """
    UPDATE api_keys SET last_used_at = to_timestamp(u.minute)
    FROM unnest(:key_ids, :minutes) AS u(key_id, minute)
    WHERE api_keys.id = u.key_id
      AND (api_keys.last_used_at IS NULL OR api_keys.last_used_at < to_timestamp(u.minute))
    """
).bindparams(
    bindparam("key_ids", type_=ARRAY(Uuid(as_uuid=False))),
    bindparam("minutes", type_=ARRAY(BigInteger())),
)

# Buckets are cut in UTC whatever the session's TimeZone (date_trunc's third argument) and summed
# in the database: however many minutes a window holds, one row per bucket leaves PostgreSQL.
_KEY_BUCKETS = text(
    """
    SELECT date_trunc(:unit, minute, 'UTC') AS start, sum(count)::bigint AS count
    FROM api_key_usage
    WHERE key_id = :key_id AND minute >= :since
    GROUP BY 1 ORDER BY 1
    """
)
# Revoked and expired keys included: what they admitted was used all the same.
_OWNER_BUCKETS = text(
    """
    SELECT date_trunc(:unit, u.minute, 'UTC') AS start, sum(u.count)::bigint AS count
    FROM api_key_usage AS u JOIN api_keys AS k ON k.id = u.key_id
    WHERE k.owner = :owner AND u.minute >= :since
    GROUP BY 1 ORDER BY 1
    """
)
_KEY_EXISTS = text("SELECT EXISTS (SELECT 1 FROM api_keys WHERE id = :key_id)")
_OWNER_EXISTS = text("SELECT EXISTS (SELECT 1 FROM api_keys WHERE owner = :owner)")

# Marks the pruner's statements, which run in the background whatever requests do, so that tests
# counting a request's statements can leave them out (as the key-change feed's).
_PRUNER = {"background_job": "usage_pruner"}

# The oldest rows first, at most `limit`, found through `ix_api_key_usage_minute` and deleted by
# their physical address (a TID scan), measured against the database's clock.
_DELETE_EXPIRED = text(
    """
    DELETE FROM api_key_usage WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM api_key_usage
        WHERE minute < now() - :retention
        ORDER BY minute LIMIT :limit
    ))
    """
).bindparams(bindparam("retention", type_=Interval()))
# Credits as Redis counted them, only into the epoch they were counted in: a count read before
# an admin set the credits again never overwrites the new ones. The trigger ignores these columns.
_STORE_CREDITS = text(
    """
    UPDATE api_keys
    SET credits_remaining = u.remaining, credits_refilled_at = to_timestamp(u.refilled)
    FROM unnest(:key_ids, :remaining, :epochs, :refilled) AS u(key_id, remaining, epoch, refilled)
    WHERE api_keys.id = u.key_id AND api_keys.credits_epoch = u.epoch
      AND api_keys.credits_remaining IS NOT NULL
    """
).bindparams(
    bindparam("key_ids", type_=ARRAY(Uuid(as_uuid=False))),
    bindparam("remaining", type_=ARRAY(BigInteger())),
    bindparam("epochs", type_=ARRAY(BigInteger())),
    bindparam("refilled", type_=ARRAY(BigInteger())),
)


class ApiKeyUsageRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def upsert_counts(
        self, key_ids: Sequence[str], minutes: Sequence[int], counts: Sequence[int]
    ) -> None:
        """Store absolute counts (rows in parallel columns, minutes in epoch seconds); an
        existing row keeps the larger of the two."""
        if not key_ids:
            return
        await self.session.execute(
            _UPSERT_COUNTS, {"key_ids": key_ids, "minutes": minutes, "counts": counts}
        )

    async def touch_last_used(self, key_ids: Sequence[str], minutes: Sequence[int]) -> None:
        """`last_used_at = GREATEST(last_used_at, minute)`, written only where it moves forward."""
        if not key_ids:
            return
        await self.session.execute(_TOUCH_LAST_USED, {"key_ids": key_ids, "minutes": minutes})

    async def store_credits(
        self,
        key_ids: Sequence[str],
        remaining: Sequence[int],
        epochs: Sequence[int],
        refilled: Sequence[int],
    ) -> None:
        """Persist keys' credits left (epoch seconds of their last refill's period)."""
        if not key_ids:
            return
        await self.session.execute(
            _STORE_CREDITS,
            {"key_ids": key_ids, "remaining": remaining, "epochs": epochs, "refilled": refilled},
        )

    async def minutes_since(self, key_id: uuid.UUID, since: datetime) -> list[tuple[datetime, int]]:
        statement = (
            select(ApiKeyUsage.minute, ApiKeyUsage.count)
            .where(ApiKeyUsage.key_id == key_id, ApiKeyUsage.minute >= since)
            .order_by(ApiKeyUsage.minute)
        )
        return [(minute, count) for minute, count in await self.session.execute(statement)]

    async def key_buckets(
        self, key_id: uuid.UUID, since: datetime, unit: str
    ) -> list[tuple[datetime, int]]:
        """The key's admitted requests per `unit` (`minute`, `hour`, `day`) from `since`, oldest
        first; buckets without requests are absent."""
        rows = await self.session.execute(
            _KEY_BUCKETS, {"key_id": key_id, "since": since, "unit": unit}
        )
        return [(start, count) for start, count in rows]

    async def owner_buckets(
        self, owner: str, since: datetime, unit: str
    ) -> list[tuple[datetime, int]]:
        """As `key_buckets`, summed over every key of `owner`."""
        rows = await self.session.execute(
            _OWNER_BUCKETS, {"owner": owner, "since": since, "unit": unit}
        )
        return [(start, count) for start, count in rows]

    async def key_exists(self, key_id: uuid.UUID) -> bool:
        return bool(await self.session.scalar(_KEY_EXISTS, {"key_id": key_id}))

    async def owner_exists(self, owner: str) -> bool:
        return bool(await self.session.scalar(_OWNER_EXISTS, {"owner": owner}))

    async def delete_expired(self, retention: timedelta, *, limit: int, timeout_ms: int) -> int:
        """Delete at most `limit` of the rows older than `retention`, within `timeout_ms`; the
        number deleted."""
        # SET LOCAL ends with the transaction, so a pooled connection keeps no timeout of ours.
        timeout = text(f"SET LOCAL statement_timeout = {int(timeout_ms)}")
        await self.session.execute(timeout.execution_options(**_PRUNER))
        result = await self.session.execute(
            _DELETE_EXPIRED.execution_options(**_PRUNER), {"retention": retention, "limit": limit}
        )
        return int(result.rowcount)  # type: ignore[attr-defined]
