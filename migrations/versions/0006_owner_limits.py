"""Owner-wide rate limits: `owner_limits`, denormalised into `api_keys.owner_rate_limits`.

Triggers keep every key's copy equal to its owner's row: a change of an owner's limits updates
that owner's keys (which moves their `version`, so the key-change feed, pub/sub and the Redis
directory carry the new limits to every worker), and a key created or moved to an owner takes the
owner's limits. The audit log gains entries whose target is an owner, not a key.

Revision ID: 0006_owner_limits
Revises: 0005_key_rate_limits
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006_owner_limits"
down_revision = "0005_key_rate_limits"
branch_labels = None
depends_on = None

_SPREAD_FUNCTION = """
CREATE FUNCTION owner_limits_spread() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE api_keys SET owner_rate_limits = '{}'
        WHERE owner = OLD.owner AND owner_rate_limits <> '{}';
        RETURN OLD;
    END IF;
    UPDATE api_keys SET owner_rate_limits = NEW.rate_limits
    WHERE owner = NEW.owner AND owner_rate_limits IS DISTINCT FROM NEW.rate_limits;
    RETURN NEW;
END
$$
"""

_COPY_FUNCTION = """
CREATE FUNCTION api_keys_copy_owner_limits() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.owner_rate_limits := COALESCE(
        (SELECT rate_limits FROM owner_limits WHERE owner = NEW.owner), '{}');
    RETURN NEW;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "owner_limits",
        sa.Column("owner", sa.String(200), primary_key=True),
        sa.Column("rate_limits", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
    )
    op.add_column(
        "api_keys",
        sa.Column(
            "owner_rate_limits",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
    )
    op.execute(_SPREAD_FUNCTION)
    op.execute(
        "CREATE TRIGGER owner_limits_spread AFTER INSERT OR UPDATE OR DELETE ON owner_limits "
        "FOR EACH ROW EXECUTE FUNCTION owner_limits_spread()"
    )
    op.execute(_COPY_FUNCTION)
    op.execute(
        "CREATE TRIGGER api_keys_copy_owner_limits BEFORE INSERT OR UPDATE OF owner ON api_keys "
        "FOR EACH ROW EXECUTE FUNCTION api_keys_copy_owner_limits()"
    )
    op.alter_column("audit_log", "key_id", existing_type=sa.Uuid(), nullable=True)
    op.add_column("audit_log", sa.Column("owner", sa.String(200), nullable=True))


def downgrade() -> None:
    op.execute("DELETE FROM audit_log WHERE key_id IS NULL")
    op.drop_column("audit_log", "owner")
    op.alter_column("audit_log", "key_id", existing_type=sa.Uuid(), nullable=False)
    op.execute("DROP TRIGGER api_keys_copy_owner_limits ON api_keys")
    op.execute("DROP FUNCTION api_keys_copy_owner_limits()")
    op.execute("DROP TRIGGER owner_limits_spread ON owner_limits")
    op.execute("DROP FUNCTION owner_limits_spread()")
    op.drop_column("api_keys", "owner_rate_limits")
    op.drop_table("owner_limits")
