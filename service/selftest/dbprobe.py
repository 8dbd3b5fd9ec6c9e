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
