"""The `audit_log` table: one row per admin action on a key or an owner; never key material."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Identity, Index, String, Uuid, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base


class AuditEntry(Base):
    __tablename__ = "audit_log"

    # Ascending with insertion: the cursor of `GET /v1/admin/audit` and the order of the log.
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("clock_timestamp()")
    )
    action: Mapped[str] = mapped_column(String(32))
    # No foreign key: the log outlives whatever happens to a key's row. None: an entry whose
    # target is an owner (`owner` then says which).
    key_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    owner: Mapped[str | None] = mapped_column(String(200))
    # The acting key's id, or `cli:` and the OS user.
    actor: Mapped[str] = mapped_column(String(200))
    # Changed fields, each `{"from": old, "to": new}` (JSON values; `from` is null on create).
    changes: Mapped[dict[str, Any]] = mapped_column(JSONB)

    __table_args__ = (Index("ix_audit_log_key_id", "key_id", "id"),)
