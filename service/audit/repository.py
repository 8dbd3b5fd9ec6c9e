"""`AuditRepository`: all SQL for `audit_log`. It flushes but never commits; use cases do."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import cast

from sqlalchemy import Table, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.audit.models import AuditEntry

_TABLE = cast(Table, AuditEntry.__table__)


class AuditRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add_many(self, rows: Sequence[Mapping[str, object]]) -> None:
        """One INSERT for the rows (a bulk create writes a row per key)."""
        if rows:
            await self.session.execute(insert(_TABLE), list(rows))

    async def page(
        self, *, key_id: uuid.UUID | None, after_id: int | None, limit: int
    ) -> Sequence[AuditEntry]:
        """Entries in the order they were written, from after `after_id`, at most `limit`."""
        statement = select(AuditEntry).order_by(AuditEntry.id).limit(limit)
        if key_id is not None:
            statement = statement.where(AuditEntry.key_id == key_id)
        if after_id is not None:
            statement = statement.where(AuditEntry.id > after_id)
        return (await self.session.execute(statement)).scalars().all()
