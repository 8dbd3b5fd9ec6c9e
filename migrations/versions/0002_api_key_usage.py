"""Create api_key_usage: admitted requests per key and minute.

Revision ID: 0002_api_key_usage
Revises: 0001_api_keys
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_api_key_usage"
down_revision = "0001_api_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_key_usage",
        sa.Column("key_id", sa.Uuid(), nullable=False),
        sa.Column("minute", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["key_id"], ["api_keys.id"],
            name="fk_api_key_usage_key_id_api_keys", ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("key_id", "minute", name="pk_api_key_usage"),
    )


def downgrade() -> None:
    op.drop_table("api_key_usage")
