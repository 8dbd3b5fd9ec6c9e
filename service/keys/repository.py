"""`ApiKeyRepository`: all SQL for `api_keys`. It flushes but never commits; use cases do."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Row,
    Select,
    String,
    Table,
    any_,
    bindparam,
    func,
    insert,
    or_,
    select,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncSession

from service.keys.listing import KeyCursor, KeyState, like_prefix
from service.keys.models import ApiKey

# One statement whatever the number of hashes (an IN list would compile and prepare anew for
# every count).
_TABLE = cast(Table, ApiKey.__table__)  # a Table, typed as any FromClause
_BY_HASHES = select(_TABLE).where(
    _TABLE.c.key_hash == any_(bindparam("hashes", type_=ARRAY(String())))
)

# Marks the key-change feed's statements, which run in the background in every worker, so that
# tooling (and the tests proving the request path sends no SQL) can tell them apart.
FEED = {"background_job": "key_change_feed"}


class ApiKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, key: ApiKey) -> ApiKey:
        self.session.add(key)
        await self.session.flush()
        await self.session.refresh(key)
        return key

    async def add_many(
        self, rows: Sequence[Mapping[str, object]], *, batch_size: int = 1000
    ) -> list[Row[Any]]:
        """Insert rows of column values; return the stored rows in the same order. One multi-row
        INSERT per batch and no ORM objects: an `add` per key costs a round trip and a refresh."""
        statement = insert(_TABLE).returning(_TABLE, sort_by_parameter_order=True)
        stored: list[Row[Any]] = []
        for start in range(0, len(rows), batch_size):
            batch = list(rows[start : start + batch_size])
            stored.extend((await self.session.execute(statement, batch)).all())
        return stored

    async def get(self, key_id: uuid.UUID, *, for_update: bool = False) -> ApiKey | None:
        statement = select(ApiKey).where(ApiKey.id == key_id)
        if for_update:
            statement = statement.with_for_update()
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def get_by_hash(self, key_hash: str) -> ApiKey | None:
        statement = select(ApiKey).where(ApiKey.key_hash == key_hash)
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def get_many_by_hash(self, key_hashes: Sequence[str]) -> Sequence[Row[Any]]:
        """The rows of those hashes that exist (any order), as plain rows: the verifier's batched
        miss path, where building ORM objects would cost more than the query."""
        return (await self.session.execute(_BY_HASHES, {"hashes": list(key_hashes)})).all()

    async def database_now(self) -> datetime:
        """The database's clock: the feed compares `changed_at` only with this, never a host's."""
        statement = select(func.clock_timestamp()).execution_options(**FEED)
        now: datetime = (await self.session.execute(statement)).scalar_one()
        return now

    async def changed_since(self, since: datetime) -> Sequence[ApiKey]:
        """Keys changed after their creation (version > 1) since `since`, oldest change first."""
        statement = (
            select(ApiKey)
            .where(ApiKey.version > 1, ApiKey.changed_at > since)
            .order_by(ApiKey.changed_at)
            .execution_options(**FEED)
        )
        return (await self.session.execute(statement)).scalars().all()

    async def page(
        self,
        *,
        owner: str | None,
        name_prefix: str | None,
        state: KeyState,
        after: KeyCursor | None,
        limit: int,
        now: datetime,
    ) -> Sequence[ApiKey]:
        """At most `limit` keys in `(created_at, id)` order, strictly after `after`."""
        statement = page_query(
            owner=owner, name_prefix=name_prefix, state=state, after=after, limit=limit, now=now
        )
        return (await self.session.execute(statement)).scalars().all()

    async def active_of_owner(self, owner: str, *, now: datetime) -> Sequence[ApiKey]:
        """Every key of `owner` usable at `now` (those a worker may hold in its cache)."""
        statement = select(ApiKey).where(ApiKey.owner == owner, *_in_state(KeyState.ACTIVE, now))
        return (await self.session.execute(statement)).scalars().all()

    async def flush(self) -> None:
        await self.session.flush()


def page_query(
    *,
    owner: str | None,
    name_prefix: str | None,
    state: KeyState,
    after: KeyCursor | None,
    limit: int,
    now: datetime,
) -> Select[ApiKey]:
    """The listing's statement: keyset pagination, so every page costs the same and none shifts
    under inserts. Migration 0009 indexes each shape; tests/integration/test_key_listing_plans.py
    shows their plans at a million keys."""
    order = (ApiKey.created_at, ApiKey.id)
    statement = select(ApiKey).where(*_in_state(state, now)).order_by(*order).limit(limit)
    if owner is not None:
        statement = statement.where(ApiKey.owner == owner)
    if name_prefix is not None:
        statement = statement.where(ApiKey.name.like(like_prefix(name_prefix)))
    if after is not None:
        statement = statement.where(tuple_(*order) > tuple_(after.created_at, after.id))
    return statement


def _in_state(state: KeyState, now: datetime) -> list[ColumnElement[bool]]:
    """The conditions of `state` at `now`, as `KeyRecord.status` decides it."""
    revoked = ApiKey.revoked_at <= now
    expired = ApiKey.expires_at <= now
    not_revoked = or_(ApiKey.revoked_at.is_(None), ApiKey.revoked_at > now)
    not_expired = or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now)
    match state:
        case KeyState.ACTIVE:
            return [not_revoked, not_expired, ApiKey.enabled.is_(True)]
        case KeyState.REVOKED:
            return [revoked]
        case KeyState.EXPIRED:
            return [expired, not_revoked]
        case KeyState.DISABLED:
            return [not_revoked, not_expired, ApiKey.enabled.is_(False)]
        case KeyState.ALL:
            return []
