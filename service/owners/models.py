"""The `owner_limits` table: an owner's limits, which triggers copy onto each of its keys."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ARRAY, DateTime, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base


class OwnerLimits(Base):
    __tablename__ = "owner_limits"

    owner: Mapped[str] = mapped_column(String(200), primary_key=True)
    # Canonical limit texts, as `api_keys.rate_limits` holds them.
    rate_limits: Mapped[list[str]] = mapped_column(ARRAY(Text))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("clock_timestamp()")
    )
