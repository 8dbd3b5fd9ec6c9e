"""Index `api_key_usage.minute`, so retention finds the oldest rows without reading the table.

A B-tree, not BRIN: pruning frees the oldest pages and new minutes are written into them, so
physical order stops following time after one retention period; BRIN ranges only ever widen, and
every pruning pass would soon read the whole table to find a few rows. The B-tree stays exact,
costs one entry per row, and leaves HOT updates of `count` possible (`minute` never changes).

Revision ID: 0010_usage_minute_index
Revises: 0004_audit_log
"""

from alembic import op

revision = "0010_usage_minute_index"
down_revision = "0009_key_listing_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # CONCURRENTLY (outside the migration's transaction): a large usage table is indexed while
    # the flusher goes on writing to it.
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_api_key_usage_minute", "api_key_usage", ["minute"], postgresql_concurrently=True
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(
            "ix_api_key_usage_minute", table_name="api_key_usage", postgresql_concurrently=True
        )
