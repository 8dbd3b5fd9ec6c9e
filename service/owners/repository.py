"""`OwnerLimitsRepository`: all SQL for `owner_limits`. It flushes but never commits."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from service.owners.models import OwnerLimits


class OwnerLimitsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, owner: str, *, for_update: bool = False) -> OwnerLimits | None:
        statement = select(OwnerLimits).where(OwnerLimits.owner == owner)
        if for_update:
            statement = statement.with_for_update()
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def put(self, owner: str, rate_limits: list[str]) -> None:
        """Insert or replace the owner's limits (the table's trigger updates its keys)."""
        statement = insert(OwnerLimits).values(owner=owner, rate_limits=rate_limits)
        statement = statement.on_conflict_do_update(
            index_elements=[OwnerLimits.owner],
            set_={"rate_limits": rate_limits, "updated_at": func.clock_timestamp()},
        )
        await self.session.execute(statement)

    async def delete(self, owner: str) -> None:
        await self.session.execute(delete(OwnerLimits).where(OwnerLimits.owner == owner))

    async def list(self) -> Sequence[OwnerLimits]:
        statement = select(OwnerLimits).order_by(OwnerLimits.owner)
        return (await self.session.execute(statement)).scalars().all()
