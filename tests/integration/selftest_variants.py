"""Faulty app variants the self-test must catch, built around the real app (never a switch in it).

Run as real processes, e.g. `uvicorn tests.integration.selftest_variants:leaky_app --factory
--workers 2` with PROMETHEUS_MULTIPROC_DIR set, as `gatekey serve` would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import ASGIApp, Receive, Scope, Send

from service import resources
from service.keys.verifier import KeyVerifier
from service.metrics import Metrics
from service.metrics.resources import record_process_resources
from service.workers.entry import create_worker_app

LEAKED_SESSIONS_PER_WORKER = 3
RETAINED_BYTES_PER_REQUEST = 32 * 1024
SLOW_REQUEST_S = 1.5
FAULT_PATH = "/fault"

Next = Callable[[Request], Awaitable[Response]]


def leaky_app() -> FastAPI:
    """Opens a session outside `get_session()` on a worker's first API requests and keeps it:
    its connection stays checked out, idle in transaction, for the life of the worker."""
    app = create_worker_app()
    held: list[AsyncSession] = []

    @app.middleware("http")
    async def keep_sessions_open(request: Request, call_next: Next) -> Response:
        if request.url.path.startswith("/v1/") and len(held) < LEAKED_SESSIONS_PER_WORKER:
            session = AsyncSession(request.app.state.gatekey.database.engine)
            held.append(session)
            await session.execute(text("SELECT 1"))
        return await call_next(request)

    return app


def _hoarding(size: int) -> FastAPI:
    app = create_worker_app()
    hoard: list[bytes] = []

    @app.middleware("http")
    async def retain(request: Request, call_next: Next) -> Response:
        hoard.append(b"x" * size)  # written, so it is resident
        return await call_next(request)

    return app


def hoarding_app() -> FastAPI:
    """Keeps 32 KiB from every request in a list that only grows."""
    return _hoarding(RETAINED_BYTES_PER_REQUEST)


def kilobyte_hoarding_app() -> FastAPI:
    """Keeps 1 KiB from every request: the smallest leak the memory check must catch."""
    return _hoarding(1024)


def no_metrics_app() -> FastAPI:
    """Serves everything but `/metrics`."""
    app = create_worker_app()
    app.router.routes = [r for r in app.router.routes if getattr(r, "path", "") != "/metrics"]
    return app


def stale_cache_app() -> FastAPI:
    """A verification cache that nothing empties: neither the key-change feed nor announcements."""
    KeyVerifier.key_changed = lambda self, entry: None  # type: ignore[method-assign]
    KeyVerifier.invalidate = lambda self: None  # type: ignore[method-assign]
    return create_worker_app()


def double_counting_app() -> FastAPI:
    """Registers the request-metrics middleware twice: every request is counted twice."""
    app = create_worker_app()
    app.user_middleware.insert(0, app.user_middleware[0])
    return app


def frozen_resources_app() -> FastAPI:
    """Records each worker's memory and CPU once at start-up, never again."""

    async def record_once(
        metrics: Metrics, stop: asyncio.Event | None = None, interval: float = 1.0
    ) -> None:
        record_process_resources(metrics)
        await (stop or asyncio.Event()).wait()

    resources.run_resource_sampler = record_once  # type: ignore[attr-defined]
    return create_worker_app()


def slow_app() -> FastAPI:
    """Answers every API request after 1.5 s: no error, only slowness."""
    app = create_worker_app()

    @app.middleware("http")
    async def delay(request: Request, call_next: Next) -> Response:
        if request.url.path.startswith("/v1/"):
            await asyncio.sleep(SLOW_REQUEST_S)
        return await call_next(request)

    return app


def failing_route_app() -> FastAPI:
    """Answers 500 on `/fault`, a route the self-test never calls: another client's errors."""
    app = create_worker_app()

    async def fault() -> JSONResponse:
        return JSONResponse({"title": "injected"}, status_code=500)

    app.add_api_route(FAULT_PATH, fault, methods=["GET"])
    return app


RAISE_EVERY = 20  # one request in 20 raises after its answer went out


def raising_app() -> ASGIApp:
    """Raises after the answer to every 20th API request was sent: the client sees 200, only the
    server's log (uvicorn's "Exception in ASGI application") tells."""
    app = create_worker_app()
    seen = [0]

    async def raise_afterwards(scope: Scope, receive: Receive, send: Send) -> None:
        await app(scope, receive, send)
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            seen[0] += 1
            if seen[0] % RAISE_EVERY == 0:
                raise RuntimeError("raised after the response")

    return raise_afterwards


def deaf_feed_app() -> FastAPI:
    """A key-change feed that polls on time but reads nothing: it looks fresh, so every worker
    keeps a key it cached for KEY_CACHE_MAX_AGE however the key changes in the database."""
    from datetime import datetime

    from service.keys.feed import KeyChangeFeed

    async def read_nothing(self: KeyChangeFeed, since: datetime | None) -> datetime:
        return since or datetime.now().astimezone()

    KeyChangeFeed._poll = read_nothing  # type: ignore[method-assign]
    return create_worker_app()
