"""How many workers fit: workers × (pool size + overflow) must fit the database's free slots."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from service.config import Settings
from service.db import connect_args
from service.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class ConnectionBudget:
    max_connections: int
    reserved: int

    @property
    def available(self) -> int:
        return self.max_connections - self.reserved


async def read_connection_budget(settings: Settings) -> ConnectionBudget | None:
    """`max_connections` less superuser slots (and, on PostgreSQL 16+, `reserved_connections`);
    None behind PgBouncer, whose own pool size, not the workers', decides the server connections."""
    if settings.database_pgbouncer:
        return None
    engine = create_async_engine(
        settings.database_url,
        connect_args=connect_args(settings, application_name="gatekey-sizing"),
    )
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                text(
                    "SELECT name, setting::int FROM pg_settings WHERE name IN "
                    "('max_connections', 'superuser_reserved_connections', 'reserved_connections')"
                )
            )
            values: dict[str, int] = {row[0]: row[1] for row in rows}
    finally:
        await engine.dispose()
    reserved = values.get("superuser_reserved_connections", 0) + values.get(
        "reserved_connections", 0
    )
    return ConnectionBudget(values["max_connections"], reserved)


def plan_workers(
    *, requested: int | None, cpu_count: int, per_worker: int, budget: ConnectionBudget | None
) -> int:
    """The worker count to run: the request if it fits, else the CPU count capped to fit; with
    no budget (behind PgBouncer), the request or the CPU count."""
    if budget is None:
        return requested if requested is not None else cpu_count
    fitting = budget.available // per_worker
    if requested is not None:
        if requested * per_worker > budget.available:
            raise InvalidInput(
                f"{requested} workers × {per_worker} connections (DATABASE_POOL_SIZE + "
                f"DATABASE_POOL_MAX_OVERFLOW) = {requested * per_worker} exceeds PostgreSQL's "
                f"{budget.available} available connections (max_connections "
                f"{budget.max_connections} - {budget.reserved} reserved); "
                f"use at most {fitting} workers or a smaller pool"
            )
        return requested
    if fitting < 1:
        raise InvalidInput(
            f"one worker needs {per_worker} connections but PostgreSQL has only "
            f"{budget.available} available; lower DATABASE_POOL_SIZE / DATABASE_POOL_MAX_OVERFLOW"
        )
    return max(1, min(cpu_count, fitting))
