"""Several rate limits per key: `api_keys.rate_limits text[]` replaces `rate_limit`.

Each element is a canonical limit text (`10/second`, `1000/day shadow`); an empty array means the
default policy, as NULL did. The copy runs with the version trigger off: the limits in force do
not change, so no worker needs to hear of it.

Revision ID: 0005_key_rate_limits
Revises: 0004_audit_log
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005_key_rate_limits"
down_revision = "0004_audit_log"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "api_keys",
        sa.Column(
            "rate_limits",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
    )
    op.execute("ALTER TABLE api_keys DISABLE TRIGGER api_keys_bump_version")
    op.execute(
        "UPDATE api_keys SET rate_limits = ARRAY[rate_limit] WHERE rate_limit IS NOT NULL"
    )
    op.execute("ALTER TABLE api_keys ENABLE TRIGGER api_keys_bump_version")
    op.drop_column("api_keys", "rate_limit")


def downgrade() -> None:
    # Only the first enforced limit survives: the old column holds one, and no shadow.
    op.add_column("api_keys", sa.Column("rate_limit", sa.String(32), nullable=True))
    op.execute("ALTER TABLE api_keys DISABLE TRIGGER api_keys_bump_version")
    op.execute(
        "UPDATE api_keys SET rate_limit = (SELECT l FROM unnest(rate_limits) WITH ORDINALITY"
        " AS u(l, n) WHERE l NOT LIKE '% shadow' ORDER BY n LIMIT 1)"
    )
    op.execute("ALTER TABLE api_keys ENABLE TRIGGER api_keys_bump_version")
    op.drop_column("api_keys", "rate_limits")
