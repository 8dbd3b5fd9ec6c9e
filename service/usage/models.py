"""The `api_key_usage` table: admitted requests per key and minute."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base


class ApiKeyUsage(Base):
    __tablename__ = "api_key_usage"

    key_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True
    )
    # Start of the minute, from Redis's clock (the rate-limit script counts by it).
    minute: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    # Cumulative admitted requests in that minute: absolute, so re-writing it is harmless.
    count: Mapped[int] = mapped_column(BigInteger)
