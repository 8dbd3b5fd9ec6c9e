"""The engine and `get_session()`: every session returns its connection, whatever happens inside."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from service.config import Settings
from service.errors import DatabaseUnavailable, InvalidInput
from service.metrics.pool import InstrumentedAsyncQueuePool, instrument_engine
from service.metrics.registry import Metrics

logger = logging.getLogger("gatekey.db")

# Connection-level failures that mean "the database is not there", as opposed to a bug in a query.
_UNAVAILABLE = (OSError, sa_exc.InterfaceError, sa_exc.OperationalError, asyncio.TimeoutError)
# Server answers that mean the same: the deployment is not ready, which a client should retry
# (503), not a bug in a query (500). asyncpg raises these as plain DBAPIError or ProgrammingError.
_UNAVAILABLE_SQLSTATES = {
    "08": "connection failure",
    "3D000": "the database does not exist (run `gatekey db upgrade`)",
    "42P01": "the schema is not migrated (run `gatekey db upgrade`)",
    "53": "the server is out of resources",
    "57P": "the server is shutting down or starting",
}


# Text PostgreSQL cannot hold (a NUL character in a name or a query parameter): the client's
# input, whatever field it came in, so a 4xx rather than a 500.
_UNSTORABLE_TEXT = {"22021", "22P05"}


def _sqlstate(exc: sa_exc.DBAPIError) -> str:
    return str(getattr(exc.orig, "sqlstate", None) or "")


def unavailable_reason(exc: sa_exc.DBAPIError) -> str | None:
    """Why the database cannot serve, when `exc` says so; None for any other database error."""
    sqlstate = _sqlstate(exc)
    for prefix, reason in _UNAVAILABLE_SQLSTATES.items():
        if sqlstate.startswith(prefix):
            return reason
    return None


def connect_args(
    settings: Settings, *, application_name: str, timeout_s: float = 5
) -> dict[str, object]:
    """asyncpg's connect arguments for every engine on `DATABASE_URL`.

    Behind PgBouncer's transaction pooling, consecutive transactions of one client connection
    run on different server connections: asyncpg's statement cache and SQLAlchemy's would
    execute a statement prepared on another server (`prepared statement "..." does not exist`),
    and asyncpg's numbered names would collide between clients sharing a server (`already
    exists`). So nothing is cached and every statement gets a name of its own, prepared and run
    inside one transaction (SQLAlchemy's advice for PgBouncer).
    """
    args: dict[str, object] = {
        "server_settings": {"application_name": application_name},
        "timeout": timeout_s,
    }
    if settings.database_pgbouncer:
        args |= {
            "statement_cache_size": 0,
            "prepared_statement_cache_size": 0,
            "prepared_statement_name_func": _unique_statement_name,
        }
    return args


def _unique_statement_name() -> str:
    return f"__gk_{uuid.uuid4().hex}__"


def create_engine(
    settings: Settings, *, application_name: str = "gatekey", metrics: Metrics | None = None
) -> AsyncEngine:
    """An asyncpg engine sized by settings; `application_name` makes its connections visible.

    With `metrics`, the pool reports size, checked-out, overflow, waits and timeouts to them.
    """
    engine = create_async_engine(
        settings.database_url,
        poolclass=InstrumentedAsyncQueuePool,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_pool_max_overflow,
        pool_timeout=settings.database_pool_timeout,
        pool_recycle=settings.database_pool_recycle,
        pool_pre_ping=True,
        connect_args=connect_args(settings, application_name=application_name),
    )
    event.listen(engine.sync_engine, "handle_error", _stuck_connection_is_a_disconnect)
    if metrics is not None:
        instrument_engine(engine, metrics)
    return engine


def _stuck_connection_is_a_disconnect(context: ExceptionContext) -> None:
    """An asyncpg connection whose server went away mid-operation (PostgreSQL restarted, the
    backend terminated) can stay open but stuck: every later call fails with `InternalClientError`
    ("another operation is in progress"), and SQLAlchemy, which asks only whether the socket is
    closed, would hand it out again. Calling it a disconnect makes the pool discard it (and
    pre-ping replace it), and the request that met it answers 503."""
    if isinstance(context.original_exception, asyncpg.InternalClientError):
        context.is_disconnect = True


async def _close(session: AsyncSession) -> None:
    """Return the session's connection; one whose rollback fails (PostgreSQL restarted, the
    backend terminated, an operation cut off mid-way) is discarded instead, never reused. The
    failure is not raised: it would replace the block's own outcome (a 200, or the 503 that
    already says the database is away) with a 500."""
    try:
        await session.close()
    except (*_UNAVAILABLE, sa_exc.DBAPIError) as exc:
        logger.warning("db_connection_discarded", extra={"error": repr(exc)})
        await session.invalidate()


class Database:
    """Owns the process's engine; `get_session()` is the only way to a session."""

    def __init__(
        self,
        settings: Settings,
        *,
        application_name: str = "gatekey",
        metrics: Metrics | None = None,
    ) -> None:
        self.engine = create_engine(settings, application_name=application_name, metrics=metrics)
        self._capacity = settings.database_pool_size + settings.database_pool_max_overflow
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=False)

    @asynccontextmanager
    async def get_session(self) -> AsyncIterator[AsyncSession]:
        """A session whose connection goes back to the pool on success, error or cancellation.

        Nothing commits here: write use cases commit explicitly. Pool timeouts and connection
        failures become `DatabaseUnavailable`, which the API answers with 503 and `Retry-After`.
        """
        session = self._sessions()
        try:
            yield session
        except sa_exc.TimeoutError as exc:
            raise DatabaseUnavailable("no database connection became free in time") from exc
        except _UNAVAILABLE as exc:
            raise DatabaseUnavailable(f"database unavailable: {type(exc).__name__}") from exc
        except sa_exc.DBAPIError as exc:
            if exc.connection_invalidated:
                raise DatabaseUnavailable("database unavailable: connection lost") from exc
            if _sqlstate(exc) in _UNSTORABLE_TEXT:
                raise InvalidInput("text must not contain NUL characters") from exc
            reason = unavailable_reason(exc)
            if reason is None:
                raise
            raise DatabaseUnavailable(f"database unavailable: {reason}") from exc
        finally:
            # Shielded: a client that disconnects mid-request cancels this task, and an
            # interrupted close is exactly how connections leak out of a pool.
            await asyncio.shield(_close(session))

    def has_free_connection(self) -> bool:
        """True when a session would get a connection without waiting: background jobs that
        can skip a turn ask first, so they never queue behind requests for the pool."""
        checked_out: int = self.engine.pool.checkedout()  # type: ignore[attr-defined]
        return checked_out < self._capacity

    async def dispose(self) -> None:
        await self.engine.dispose()
