"""`create_app(settings)`: the FastAPI app (routes, middleware, OpenAPI); its lifespan opens the
worker's resources through `service.resources`."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from service.api import health
from service.api.limits import RequestSizeLimit
from service.api.problems import document_problems, install_error_handlers
from service.audit import router as audit_router
from service.config import Settings
from service.keys import admin_router, router
from service.keys.fastpath import KeyFastPath, document_fast_routes
from service.metrics import RequestMetricsMiddleware, create_metrics, metrics_endpoint
from service.owners import router as owners_router
from service.resources import open_serving
from service.usage import admin_router as usage_admin_router
from service.usage import router as usage_router


def create_app(settings: Settings, *, worker_count: int = 1) -> FastAPI:
    """The HTTP app; nothing is opened until its lifespan starts."""
    metrics = create_metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_serving(settings, worker_count=worker_count, metrics=metrics) as state:
            app.state.gatekey = state
            # What is loaded now lives as long as the process: keep the collector off it.
            gc.freeze()
            yield

    docs = settings.docs_enabled
    # fastapi-offline: FastAPI with /docs and /redoc loading Swagger UI and ReDoc from files it
    # ships (pinned), not from a CDN, so the pages work where the browser has no Internet.
    app = (FastAPIOffline if docs else FastAPI)(
        title="gatekey",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
        # A missing or extra slash is a 404 problem: Starlette's redirect would build its
        # absolute Location from the Host header, which the client chooses.
        redirect_slashes=False,
        # FastAPI's own telemetry reads the environment on every request; Prometheus covers it.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(router.router)
    app.include_router(usage_router.router)
    app.include_router(admin_router.router)
    app.include_router(usage_admin_router.router)
    app.include_router(audit_router.router)
    app.include_router(owners_router.router)
    app.add_route("/metrics", metrics_endpoint(metrics), methods=["GET"], include_in_schema=False)
    app.add_middleware(KeyFastPath)
    app.add_middleware(
        RequestSizeLimit,
        max_body_bytes=settings.max_body_bytes,
        max_header_bytes=settings.max_header_bytes,
    )
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)  # outermost: counts everything
    fastapi_openapi = app.openapi
    app.openapi = lambda: document_problems(  # type: ignore[method-assign]
        document_fast_routes(fastapi_openapi())
    )
    return app
