"""Index every shape of the paged key listing; the owner index becomes `(owner, created_at, id)`.

Each index ends in the listing's `(created_at, id)` order, so a page is an ordered index range
that stops at its limit, never a scan and sort of the table. Built in the migration's own
transaction (plain CREATE INDEX): key creation waits while they build, verification does not.

Revision ID: 0009_key_listing_indexes
Revises: 0008_key_metadata_state
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_key_listing_indexes"
down_revision = "0008_key_metadata_state"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_api_keys_created_at_id", "api_keys", ["created_at", "id"])
    # Serves every lookup by owner the old `(owner)` index did, in listing order too.
    op.create_index("ix_api_keys_owner_created_at_id", "api_keys", ["owner", "created_at", "id"])
    op.drop_index("ix_api_keys_owner", table_name="api_keys")
    op.create_index(
        "ix_api_keys_name_pattern",
        "api_keys",
        ["name"],
        postgresql_ops={"name": "varchar_pattern_ops"},
    )
    op.create_index(
        "ix_api_keys_revoked_created_at_id",
        "api_keys",
        ["created_at", "id"],
        postgresql_where=sa.text("revoked_at IS NOT NULL"),
    )
    op.create_index(
        "ix_api_keys_expiring_created_at_id",
        "api_keys",
        ["created_at", "id"],
        postgresql_where=sa.text("expires_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_api_keys_expiring_created_at_id", table_name="api_keys")
    op.drop_index("ix_api_keys_revoked_created_at_id", table_name="api_keys")
    op.drop_index("ix_api_keys_name_pattern", table_name="api_keys")
    op.create_index("ix_api_keys_owner", "api_keys", ["owner"])
    op.drop_index("ix_api_keys_owner_created_at_id", table_name="api_keys")
    op.drop_index("ix_api_keys_created_at_id", table_name="api_keys")
