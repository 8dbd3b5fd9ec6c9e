"""Give api_keys a version and a changed_at that every change moves: the key-change feed.

A trigger bumps both on any change to a key's own fields (not on `last_used_at`, which the usage
flusher moves), so a change made by any writer, plain SQL included, reaches every worker.

Revision ID: 0003_api_key_versions
Revises: 0002_api_key_usage
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_api_key_versions"
down_revision = "0002_api_key_usage"
branch_labels = None
depends_on = None

_BUMP_FUNCTION = """
CREATE FUNCTION api_keys_bump_version() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    unchanged api_keys;
BEGIN
    unchanged := NEW;
    unchanged.last_used_at := OLD.last_used_at;
    unchanged.version := OLD.version;
    unchanged.changed_at := OLD.changed_at;
    IF unchanged IS DISTINCT FROM OLD THEN
        NEW.version := OLD.version + 1;
        NEW.changed_at := clock_timestamp();
    END IF;
    RETURN NEW;
END
$$
"""


def upgrade() -> None:
    op.add_column(
        "api_keys", sa.Column("version", sa.BigInteger(), server_default="1", nullable=False)
    )
    op.add_column(
        "api_keys",
        sa.Column(
            "changed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
    )
    op.create_index(
        "ix_api_keys_changed_at",
        "api_keys",
        ["changed_at"],
        postgresql_where=sa.text("version > 1"),
    )
    op.execute(_BUMP_FUNCTION)
    op.execute(
        "CREATE TRIGGER api_keys_bump_version BEFORE UPDATE ON api_keys "
        "FOR EACH ROW EXECUTE FUNCTION api_keys_bump_version()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER api_keys_bump_version ON api_keys")
    op.execute("DROP FUNCTION api_keys_bump_version()")
    op.drop_index("ix_api_keys_changed_at", table_name="api_keys")
    op.drop_column("api_keys", "changed_at")
    op.drop_column("api_keys", "version")
