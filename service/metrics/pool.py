"""Pool metrics: SQLAlchemy's asyncio queue pool, reporting its size, use, overflow, waits and
timeouts to `Metrics`."""

from __future__ import annotations

from time import perf_counter

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry, QueuePool

from service.metrics.registry import Metrics


class InstrumentedAsyncQueuePool(AsyncAdaptedQueuePool):
    """`AsyncAdaptedQueuePool` that reports to `metrics` once `attach()` is called; silent before.

    Hand-written rather than pool events: no event fires before a checkout (to time the wait) or
    on a checkout timeout, and "checkin" fires before the connection is back in the queue, when
    the pool's own counts are still off by one. `_do_get` and `_do_return_conn` are the methods
    every Pool subclass implements, so every checkout and checkin passes through here. They are
    SQLAlchemy internals: tests/unit/test_library_contracts.py fails, naming the installed
    version, if an upgrade stops routing checkouts and checkins through them this way.
    """

    metrics: Metrics | None = None

    def attach(self, metrics: Metrics) -> None:
        self.metrics = metrics
        metrics.db_pool_size.set(self.size())
        self._publish(metrics)

    def _do_get(self) -> ConnectionPoolEntry:
        metrics = self.metrics
        if metrics is None:
            return super()._do_get()
        # QueuePool._do_get calls itself again only when another thread changed the pool between
        # two of its checks; under asyncio nothing runs between them: one checkout, one timing.
        started = perf_counter()
        try:
            record = super()._do_get()
        except sa_exc.TimeoutError:
            metrics.db_pool_timeouts.inc()
            raise
        finally:
            metrics.db_pool_wait.observe(perf_counter() - started)
        self._publish(metrics)
        return record

    def _do_return_conn(self, record: ConnectionPoolEntry) -> None:
        super()._do_return_conn(record)
        if self.metrics is not None:
            self._publish(self.metrics)

    def recreate(self) -> QueuePool:
        """`engine.dispose()` swaps in a new pool: the metrics move to it."""
        pool = super().recreate()
        if self.metrics is not None and isinstance(pool, InstrumentedAsyncQueuePool):
            pool.attach(self.metrics)
            self.metrics = None
        return pool

    def _publish(self, metrics: Metrics) -> None:
        metrics.db_pool_checked_out.set(self.checkedout())
        # SQLAlchemy counts overflow from -pool_size while the pool is still filling up.
        metrics.db_pool_overflow.set(max(self.overflow(), 0))


def instrument_engine(engine: AsyncEngine, metrics: Metrics) -> None:
    """Make `engine`'s pool report to `metrics` (the engine must use InstrumentedAsyncQueuePool)."""
    pool = engine.sync_engine.pool
    if not isinstance(pool, InstrumentedAsyncQueuePool):
        raise TypeError(
            f"engine pool is {type(pool).__name__}; create the engine with "
            "poolclass=InstrumentedAsyncQueuePool (service.db.engine.create_engine does)"
        )
    pool.attach(metrics)
