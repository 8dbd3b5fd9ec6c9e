"""The `api_keys` table: only hashes and metadata, never a plaintext key."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    DateTime,
    FetchedValue,
    ForeignKey,
    Index,
    String,
    Text,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base

# The listing's indexes (migration 0009), one per query shape of `repository.page_query`, each
# ending in its `(created_at, id)` order so a page is read in order and stops at its limit.
LISTING_INDEXES = (
    Index("ix_api_keys_created_at_id", "created_at", "id"),
    Index("ix_api_keys_owner_created_at_id", "owner", "created_at", "id"),
    # Pattern ops: a `LIKE 'prefix%'` reads a range of this index whatever the collation.
    Index("ix_api_keys_name_pattern", "name", postgresql_ops={"name": "varchar_pattern_ops"}),
    # Revoked and expired keys in order, apart from the (usually many more) active ones.
    Index(
        "ix_api_keys_revoked_created_at_id",
        "created_at",
        "id",
        postgresql_where=text("revoked_at IS NOT NULL"),
    ),
    Index(
        "ix_api_keys_expiring_created_at_id",
        "created_at",
        "id",
        postgresql_where=text("expires_at IS NOT NULL"),
    ),
)


class ApiKey(Base):
    __tablename__ = "api_keys"
    # `version` and `changed_at` are moved by a trigger (migration 0003); fetch them with
    # RETURNING so a use case can hand the new version on without another query.
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012  # SQLAlchemy's declared name

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    display_prefix: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    owner: Mapped[str | None] = mapped_column(String(200))
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(64)), server_default="{}")
    rate_limits: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    # The owner's limits (`owner_limits`), copied here by triggers (migration 0006): a change of
    # them moves `version`, which carries it to every worker like any key change.
    owner_rate_limits: Mapped[list[str]] = mapped_column(
        ARRAY(Text), server_default="{}", server_onupdate=FetchedValue()
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When revocation takes effect; in the future while a rotated key's grace period runs.
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    replaced_by_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("api_keys.id", ondelete="SET NULL")
    )
    created_by: Mapped[str | None] = mapped_column(String(200))
    # Declarative reserves the attribute name `metadata`; the column keeps it (`KeyRecord.of`).
    key_metadata: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, server_default=text("'{}'::jsonb")
    )
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    # Credits (migration 0007): NULL, none. The live count is Redis's; the usage flusher writes
    # it back here with `credits_refilled_at`, neither of which moves `version`.
    credits_remaining: Mapped[int | None] = mapped_column(BigInteger)
    refill: Mapped[str | None] = mapped_column(String(40))
    credits_refilled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Times an admin set the credits: Redis starts counting again at a newer epoch.
    credits_epoch: Mapped[int] = mapped_column(BigInteger, server_default="0")
    # Bumped by the database on every change to the fields above (not on `last_used_at`): the
    # key-change feed and the Redis key directory order states of a key by it.
    version: Mapped[int] = mapped_column(
        BigInteger, server_default="1", server_onupdate=FetchedValue()
    )
    changed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True),
        server_default=text("clock_timestamp()"),
        server_onupdate=FetchedValue(),
    )
    # Only changed keys are indexed: the feed never reads new ones, and a bulk import stays cheap.
    __table_args__ = (
        Index("ix_api_keys_changed_at", "changed_at", postgresql_where=text("version > 1")),
        *LISTING_INDEXES,
    )
