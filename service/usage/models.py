"""The `api_key_usage` table: admitted requests per key and minute."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base


class ApiKeyUsage(Base):
    __tablename__ = "api_key_usage"
    # Retention deletes the oldest minutes of every key at once, which the primary key (key id
    # first) cannot find without reading the whole table.
    __table_args__ = (Index("ix_api_key_usage_minute", "minute"),)

    key_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True
    )
    # Start of the minute, from Redis's clock (the rate-limit script counts by it).
    minute: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    # Cumulative admitted requests in that minute: absolute, so re-writing it is harmless.
    count: Mapped[int] = mapped_column(BigInteger)
