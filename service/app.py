"""`create_app(settings)`: the FastAPI app, whose lifespan opens and closes every resource."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from service.api import health
from service.api.problems import install_error_handlers
from service.config import RateLimitBackend, Settings
from service.db import Database
from service.guard import Guard
from service.keys import admin_router, router
from service.keys.events import RedisKeyChangePublisher, listen_for_key_changes
from service.keys.format import KeyFormat
from service.keys.verifier import KeyVerifier
from service.metrics import Metrics
from service.ratelimit.limiter import create_limiter, create_redis
from service.ratelimit.policy import parse_rate_limit
from service.state import AppState


@asynccontextmanager
async def _background(*jobs: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """Run jobs for the lifetime of the block; cancel and await them on the way out."""
    tasks = [asyncio.create_task(job) for job in jobs]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


@asynccontextmanager
async def open_state(settings: Settings, worker_count: int) -> AsyncIterator[AppState]:
    """Open the process's resources, yield them as `AppState`, close them in reverse order."""
    metrics = Metrics(CollectorRegistry())
    database = Database(settings)
    redis = (
        create_redis(settings) if settings.rate_limit_backend is RateLimitBackend.REDIS else None
    )
    limiter = create_limiter(
        settings,
        redis=redis,
        worker_count=worker_count,
        on_decision=lambda decision: metrics.ratelimit_decisions.labels(decision).inc(),
    )
    key_format = KeyFormat.from_settings(settings)
    verifier = KeyVerifier(database, key_format, ttl=settings.key_cache_ttl)
    guard = Guard(
        verifier,
        limiter,
        parse_rate_limit(settings.rate_limit_default),
        on_result=lambda result: metrics.key_verifications.labels(result).inc(),
    )
    jobs = []
    if redis is not None:
        jobs.append(listen_for_key_changes(redis, lambda _key_id: verifier.invalidate()))
    state = AppState(
        settings=settings,
        database=database,
        key_format=key_format,
        verifier=verifier,
        limiter=limiter,
        guard=guard,
        metrics=metrics,
        key_events=RedisKeyChangePublisher(redis) if redis is not None else None,
    )
    try:
        async with _background(*jobs):
            yield state
    finally:
        await limiter.aclose()
        if redis is not None:
            await redis.aclose()
        await database.dispose()


def create_app(settings: Settings, *, worker_count: int = 1) -> FastAPI:
    """The HTTP app; nothing is opened until its lifespan starts."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_state(settings, worker_count) as state:
            app.state.gatekey = state
            # What is loaded now lives as long as the process: keep the collector off it.
            gc.freeze()
            yield

    app = FastAPI(title="gatekey", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(router.router)
    app.include_router(admin_router.router)
    return app
