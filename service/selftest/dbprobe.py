"""SQL from outside the service: its connections in `pg_stat_activity` and scratch databases."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import make_url, pool, text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from service.config import Settings
from service.db import connect_args
from service.selftest.sampling import DbActivity

SERVICE_APPLICATION_NAME = "gatekey"
_PROBE_APPLICATION_NAME = "gatekey-selftest"
_ACTIVITY_SQL = text("""
SELECT count(*), count(*) FILTER (WHERE state = 'idle in transaction')
FROM pg_stat_activity
WHERE application_name = :name AND datname = current_database()
""")

_USAGE_TOTAL_SQL = text("SELECT sum(count) FROM api_key_usage WHERE key_id = CAST(:key_id AS uuid)")
_REVOKE_SQL = text("UPDATE api_keys SET revoked_at = now() WHERE id = CAST(:key_id AS uuid)")
_REVOKE_RUN_SQL = text("""
UPDATE api_keys SET revoked_at = now()
WHERE name LIKE :pattern AND 'selftest' = ANY(scopes)
  AND (revoked_at IS NULL OR revoked_at > now())
""")


def with_database(database_url: str, database: str) -> str:
    return make_url(database_url).set(database=database).render_as_string(hide_password=False)


class DatabaseProbe:
    """One autocommit connection of its own (application_name `gatekey-selftest`, so it never
    counts itself); autocommit also gives every `pg_stat_activity` read a fresh snapshot."""

    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    @classmethod
    @asynccontextmanager
    async def connect(cls, settings: Settings) -> AsyncIterator[DatabaseProbe]:
        engine = create_async_engine(
            settings.database_url,
            poolclass=pool.NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args=connect_args(settings, application_name=_PROBE_APPLICATION_NAME),
        )
        try:
            async with engine.connect() as connection:
                yield cls(connection)
        finally:
            await engine.dispose()

    async def usage_total(self, key_id: str) -> int:
        """The admitted requests of a key that reached `api_key_usage`, all minutes."""
        total = await self._connection.scalar(_USAGE_TOTAL_SQL, {"key_id": key_id})
        return int(total or 0)

    async def revoke(self, key_id: str) -> None:
        """Revoke a key by hand in SQL, as an operator might: no announcement, only the feed."""
        await self._connection.execute(_REVOKE_SQL, {"key_id": key_id})

    async def revoke_run_keys(self, name_prefix: str) -> int:
        """Revoke every still active self-test key whose name starts with `name_prefix`."""
        result = await self._connection.execute(_REVOKE_RUN_SQL, {"pattern": f"{name_prefix}%"})
        return int(getattr(result, "rowcount", 0))

    async def server_version(self) -> str:
        return str(await self._connection.scalar(text("SHOW server_version")))

    async def activity(self) -> DbActivity:
        row = (
            await self._connection.execute(_ACTIVITY_SQL, {"name": SERVICE_APPLICATION_NAME})
        ).one()
        return DbActivity(connections=int(row[0]), idle_in_transaction=int(row[1]))

    @asynccontextmanager
    async def scratch_database(self) -> AsyncIterator[str]:
        """An empty database for the migration chain, dropped afterwards whatever happens."""
        current = await self._connection.scalar(text("SELECT current_database()"))
        name = (
            f"{str(current)[:40]}_selftest_{secrets.token_hex(4)}"  # identifiers stop at 63 bytes
        )
        quoted = self._connection.dialect.identifier_preparer.quote(name)
        await self._connection.execute(text(f"CREATE DATABASE {quoted}"))
        try:
            yield name
        finally:
            await self._connection.execute(text(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
