"""Credits: a key may hold a count of units its requests spend, optionally refilled each period.

`credits_remaining` (NULL: the key has no credits) and `credits_refilled_at` are written by the
usage flusher from Redis, where the live count is kept: like `last_used_at`, they do not move
`version` (the trigger ignores them), so a flush announces nothing. `credits_epoch` counts the
times an admin set the credits: Redis starts the count again when it sees a newer epoch.

Revision ID: 0007_key_credits
Revises: 0006_owner_limits
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_key_credits"
down_revision = "0006_owner_limits"
branch_labels = None
depends_on = None

_BUMP_FUNCTION = """
CREATE OR REPLACE FUNCTION api_keys_bump_version() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    unchanged api_keys;
BEGIN
    unchanged := NEW;
    unchanged.last_used_at := OLD.last_used_at;
    {persisted}
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
_PERSISTED = """unchanged.credits_remaining := OLD.credits_remaining;
    unchanged.credits_refilled_at := OLD.credits_refilled_at;"""


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("credits_remaining", sa.BigInteger(), nullable=True))
    op.add_column("api_keys", sa.Column("refill", sa.String(40), nullable=True))
    op.add_column(
        "api_keys", sa.Column("credits_refilled_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "api_keys",
        sa.Column("credits_epoch", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.execute(_BUMP_FUNCTION.replace("{persisted}", _PERSISTED))


def downgrade() -> None:
    op.execute(_BUMP_FUNCTION.replace("{persisted}", ""))
    op.drop_column("api_keys", "credits_epoch")
    op.drop_column("api_keys", "credits_refilled_at")
    op.drop_column("api_keys", "refill")
    op.drop_column("api_keys", "credits_remaining")
