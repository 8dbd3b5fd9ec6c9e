"""Give api_keys `metadata` (the owner's JSON object) and `enabled` (off refuses the key).

Both are the key's own fields: the version trigger (0003) compares whole rows, so a change of
either moves `version` and reaches every worker like any other change.

Revision ID: 0008_key_metadata_state
Revises: 0007_key_credits
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008_key_metadata_state"
down_revision = "0007_key_credits"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Constant defaults: PostgreSQL adds both columns without rewriting the table.
    op.add_column(
        "api_keys",
        sa.Column(
            "metadata",
            postgresql.JSONB(),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )
    op.add_column(
        "api_keys",
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
    )


def downgrade() -> None:
    op.drop_column("api_keys", "enabled")
    op.drop_column("api_keys", "metadata")
