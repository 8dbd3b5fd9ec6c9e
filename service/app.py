"""`create_app(settings)`: the FastAPI app, whose lifespan opens and closes every resource."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from service.api import health
from service.api.problems import document_problems, install_error_handlers
from service.config import RateLimitBackend, RedisErrorPolicy, Settings
from service.db import Database
from service.guard import Guard
from service.keys import admin_router, router
from service.keys.events import RedisKeyChangePublisher, listen_for_key_changes
from service.keys.fastpath import KeyFastPath, document_fast_routes
from service.keys.format import KeyFormat
from service.keys.verifier import KeyVerifier
from service.metrics import (
    Metrics,
    RequestMetricsMiddleware,
    create_metrics,
    label_incrementer,
    metrics_endpoint,
    run_resource_sampler,
)
from service.ratelimit.limiter import create_limiter
from service.ratelimit.policy import parse_rate_limit
from service.redis.client import create_redis
from service.redis.keyspace import RedisKeyspace
from service.state import AppState
from service.usage import router as usage_router
from service.usage.flusher import UsageFlusher

Job = Callable[[asyncio.Event], Coroutine[Any, Any, None]]
# Background jobs get this long after the stop signal (the usage flusher's last flush) before
# they are cancelled.
STOP_GRACE_S = 10.0


@asynccontextmanager
async def _background(jobs: list[Job]) -> AsyncIterator[None]:
    """Run jobs for the lifetime of the block; on the way out, ask them to stop, then cancel."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(job(stop)) for job in jobs]
    try:
        yield
    finally:
        stop.set()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_S)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


@asynccontextmanager
async def open_state(
    settings: Settings, worker_count: int, metrics: Metrics
) -> AsyncIterator[AppState]:
    """Open the process's resources, yield them as `AppState`, close them in reverse order."""
    database = Database(settings, metrics=metrics)
    is_redis = settings.rate_limit_backend is RateLimitBackend.REDIS
    redis = create_redis(settings) if is_redis else None
    keyspace = RedisKeyspace(settings.redis_namespace)
    limiter = create_limiter(
        settings,
        redis=redis,
        worker_count=worker_count,
        on_decision=label_incrementer(metrics.ratelimit_decisions),
        keyspace=keyspace,
    )
    key_format = KeyFormat.from_settings(settings)
    verifier = KeyVerifier(
        database,
        key_format,
        ttl=settings.key_cache_ttl,
        on_cache=label_incrementer(metrics.key_cache_requests),
    )
    guard = Guard(
        verifier,
        limiter,
        parse_rate_limit(settings.rate_limit_default),
        on_result=label_incrementer(metrics.key_verifications),
        is_fallback_denial=settings.rate_limit_on_redis_error is RedisErrorPolicy.DENY,
    )
    jobs: list[Job] = [lambda stop: run_resource_sampler(metrics, stop)]
    if redis is not None:
        flusher = UsageFlusher(
            redis,
            database,
            interval_s=settings.usage_flush_interval,
            keyspace=keyspace,
            on_flush=lambda _keys: metrics.usage_flushes.labels("ok").inc(),
            on_flush_error=lambda: metrics.usage_flushes.labels("error").inc(),
            on_pending=metrics.usage_pending.set,
        )
        jobs.append(flusher.run)
        jobs.append(
            lambda stop: listen_for_key_changes(
                redis, keyspace, lambda _key_id: verifier.invalidate(), stop
            )
        )
    state = AppState(
        settings=settings,
        database=database,
        key_format=key_format,
        verifier=verifier,
        limiter=limiter,
        guard=guard,
        metrics=metrics,
        key_events=RedisKeyChangePublisher(redis, keyspace) if redis else None,
    )
    try:
        async with _background(jobs):
            yield state
    finally:
        await limiter.aclose()
        if redis is not None:
            await redis.aclose()
        await database.dispose()


def create_app(settings: Settings, *, worker_count: int = 1) -> FastAPI:
    """The HTTP app; nothing is opened until its lifespan starts."""
    metrics = create_metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_state(settings, worker_count, metrics) as state:
            app.state.gatekey = state
            # What is loaded now lives as long as the process: keep the collector off it.
            gc.freeze()
            yield

    app = FastAPI(
        title="gatekey",
        version="0.1.0",
        lifespan=lifespan,
        # FastAPI's own telemetry reads the environment on every request; Prometheus covers it.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(router.router)
    app.include_router(usage_router.router)
    app.include_router(admin_router.router)
    app.add_route("/metrics", metrics_endpoint(metrics), methods=["GET"], include_in_schema=False)
    app.add_middleware(KeyFastPath)
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)  # outermost: counts everything
    fastapi_openapi = app.openapi
    app.openapi = lambda: document_problems(  # type: ignore[method-assign]
        document_fast_routes(fastapi_openapi())
    )
    return app
