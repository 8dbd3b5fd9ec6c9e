"""Index `api_key_usage.minute`, so retention finds the oldest rows without reading the table.

A B-tree, not BRIN: pruning frees the oldest pages and new minutes are written into them, so
physical order stops following time after one retention period; BRIN ranges only ever widen, and
every pruning pass would soon read the whole table to find a few rows. The B-tree stays exact,
costs one entry per row, and leaves HOT updates of `count` possible (`minute` never changes).

Revision ID: 0010_usage_minute_index
Revises: 0009_key_listing_indexes
"""

from alembic import op

revision = "0010_usage_minute_index"
down_revision = "0009_key_listing_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # In the migration's transaction, not CONCURRENTLY: an autocommit block sends statements
    # outside a transaction, which PgBouncer's transaction pooling cannot carry (the statement
    # is prepared on one server and run on another). The build holds back usage writes while it
    # runs (the flusher retries); on a very large table, create the same index CONCURRENTLY by
    # hand first: IF NOT EXISTS then finds it and builds nothing.
    op.create_index("ix_api_key_usage_minute", "api_key_usage", ["minute"], if_not_exists=True)


def downgrade() -> None:
    op.drop_index("ix_api_key_usage_minute", table_name="api_key_usage")
