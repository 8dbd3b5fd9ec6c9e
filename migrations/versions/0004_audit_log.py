"""Add the audit log (one row per admin action on a key) and `api_keys.created_by`.

Revision ID: 0004_audit_log
Revises: 0003_api_key_versions
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004_audit_log"
down_revision = "0003_api_key_versions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A change of `created_by` moves `version` like any field (the trigger compares whole rows).
    op.add_column("api_keys", sa.Column("created_by", sa.String(200), nullable=True))
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column(
            "at",
            sa.DateTime(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("key_id", sa.Uuid(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("changes", postgresql.JSONB(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_key_id", "audit_log", ["key_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_key_id", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_column("api_keys", "created_by")
