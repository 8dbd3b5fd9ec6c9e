"""`GET /v1/admin/audit`: the audit log, oldest first, a page at a time (for `admin` keys)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from service.api.deps import AdminDep, SessionDep
from service.audit.service import MAX_PAGE, AuditRecord, list_entries

router = APIRouter(prefix="/v1/admin", tags=["admin"])


class AuditPage(BaseModel):
    # The service's records as they are (pydantic takes stdlib dataclasses).
    entries: list[AuditRecord]
    # Pass as `cursor` for the next page; null when this page is the last.
    next_cursor: int | None


@router.get("/audit")
async def audit_log(
    admin: AdminDep,
    session: SessionDep,
    key_id: Annotated[uuid.UUID | None, Query(description="only this key's entries")] = None,
    cursor: Annotated[
        int | None, Query(ge=0, le=2**63 - 1, description="`next_cursor` of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> AuditPage:
    """Admin actions on keys, in the order they were made."""
    records = await list_entries(session=session, key_id=key_id, after_id=cursor, limit=limit)
    full = len(records) == limit
    return AuditPage(
        entries=records,
        next_cursor=records[-1].id if full else None,
    )
