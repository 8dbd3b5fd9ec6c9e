"""`ApiKeyRepository`: all SQL for `api_keys`. It flushes but never commits; use cases do."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import cast

from sqlalchemy import Table, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.keys.models import ApiKey


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
    ) -> list[uuid.UUID]:
        """Insert rows of column values; return their ids in the same order. One multi-row INSERT
        per batch and no ORM objects: an `add` per key costs a round trip and a refresh each."""
        table = cast(Table, ApiKey.__table__)  # a Table, typed as any FromClause
        statement = insert(table).returning(table.c.id, sort_by_parameter_order=True)
        ids: list[uuid.UUID] = []
        for start in range(0, len(rows), batch_size):
            batch = list(rows[start : start + batch_size])
            ids.extend((await self.session.execute(statement, batch)).scalars())
        return ids

    async def get(self, key_id: uuid.UUID, *, for_update: bool = False) -> ApiKey | None:
        statement = select(ApiKey).where(ApiKey.id == key_id)
        if for_update:
            statement = statement.with_for_update()
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def get_by_hash(self, key_hash: str) -> ApiKey | None:
        statement = select(ApiKey).where(ApiKey.key_hash == key_hash)
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def list(
        self, *, owner: str | None, include_inactive: bool, now: datetime
    ) -> Sequence[ApiKey]:
        statement = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
        if owner is not None:
            statement = statement.where(ApiKey.owner == owner)
        if not include_inactive:
            statement = statement.where(
                or_(ApiKey.revoked_at.is_(None), ApiKey.revoked_at > now),
                or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now),
            )
        return (await self.session.execute(statement)).scalars().all()

    async def flush(self) -> None:
        await self.session.flush()
