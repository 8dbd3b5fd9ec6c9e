"""Pool metrics from the instrumented queue pool, with stand-in connections (no database)."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util.concurrency import greenlet_spawn

from service.config import Settings
from service.db.engine import create_engine
from service.metrics import InstrumentedAsyncQueuePool, Metrics, instrument_engine


class StandInConnection:
    """The two DBAPI calls a pool makes on its own: rollback on return, close on discard."""

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        pass


def connect() -> Any:
    """A pool creator; `Any` because the pool's type asks for a full DBAPI connection."""
    return StandInConnection()


def gauges(registry: CollectorRegistry) -> tuple[float | None, ...]:
    return tuple(
        registry.get_sample_value(f"gatekey_db_pool_{name}")
        for name in ("size", "checked_out", "overflow", "wait_seconds_count", "timeouts_total")
    )


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def pool(registry: CollectorRegistry) -> InstrumentedAsyncQueuePool:
    instrumented = InstrumentedAsyncQueuePool(connect, pool_size=1, max_overflow=1, timeout=0.001)
    instrumented.attach(Metrics(registry))
    return instrumented


async def test_checkouts_overflow_timeouts_and_returns_are_reported(
    pool: InstrumentedAsyncQueuePool, registry: CollectorRegistry
) -> None:
    assert gauges(registry) == (1, 0, 0, 0, 0)
    first: PoolProxiedConnection = await greenlet_spawn(pool.connect)
    second: PoolProxiedConnection = await greenlet_spawn(pool.connect)
    assert gauges(registry) == (1, 2, 1, 2, 0)

    with pytest.raises(sa_exc.TimeoutError):
        await greenlet_spawn(pool.connect)
    assert gauges(registry) == (1, 2, 1, 3, 1)

    await greenlet_spawn(first.close)
    assert gauges(registry) == (1, 1, 1, 3, 1)
    await greenlet_spawn(second.close)
    assert gauges(registry) == (1, 0, 0, 3, 1)


def test_recreated_pool_takes_the_metrics_over(
    pool: InstrumentedAsyncQueuePool, registry: CollectorRegistry
) -> None:
    successor = pool.recreate()

    assert isinstance(successor, InstrumentedAsyncQueuePool)
    assert successor.metrics is not None
    assert pool.metrics is None


def test_engine_from_create_engine_reports_to_metrics(registry: CollectorRegistry) -> None:
    engine = create_engine(Settings(database_pool_size=7), metrics=Metrics(registry))

    assert isinstance(engine.sync_engine.pool, InstrumentedAsyncQueuePool)
    assert registry.get_sample_value("gatekey_db_pool_size") == 7


def test_engine_with_another_pool_is_refused(registry: CollectorRegistry) -> None:
    engine = create_async_engine("postgresql+asyncpg://postgres@127.0.0.1/gatekey")

    with pytest.raises(TypeError, match="InstrumentedAsyncQueuePool"):
        instrument_engine(engine, Metrics(registry))
