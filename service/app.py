"""`create_app(settings)`: the FastAPI app, whose lifespan opens and closes every resource."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from service.api import health
from service.api.problems import install_error_handlers
from service.config import Settings
from service.db import Database
from service.guard import Guard
from service.keys import admin_router, router
from service.keys.format import KeyFormat
from service.keys.verifier import KeyVerifier
from service.metrics import Metrics
from service.ratelimit.limiter import create_limiter, create_redis
from service.ratelimit.policy import parse_rate_limit
from service.state import AppState


def _key_format(settings: Settings) -> KeyFormat:
    pepper = settings.key_pepper.get_secret_value().encode() if settings.key_pepper else None
    return KeyFormat(settings.key_prefix, pepper)


@asynccontextmanager
async def _open_state(settings: Settings, worker_count: int) -> AsyncIterator[AppState]:
    metrics = Metrics(CollectorRegistry())
    database = Database(settings)
    redis = create_redis(settings) if settings.rate_limit_backend == "redis" else None
    limiter = create_limiter(
        settings,
        redis=redis,
        worker_count=worker_count,
        on_decision=lambda decision: metrics.ratelimit_decisions.labels(decision).inc(),
    )
    key_format = _key_format(settings)
    verifier = KeyVerifier(database, key_format, ttl=settings.key_cache_ttl)
    guard = Guard(
        verifier,
        limiter,
        parse_rate_limit(settings.rate_limit_default),
        on_result=lambda result: metrics.key_verifications.labels(result).inc(),
    )
    try:
        yield AppState(settings, database, key_format, verifier, limiter, guard, metrics)
    finally:
        await limiter.aclose()
        if redis is not None:
            await redis.aclose()
        await database.dispose()


def create_app(settings: Settings, *, worker_count: int = 1) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with _open_state(settings, worker_count) as state:
            app.state.gatekey = state
            yield

    app = FastAPI(title="gatekey", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(router.router)
    app.include_router(admin_router.router)
    return app
