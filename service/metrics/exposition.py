"""`GET /metrics`: Prometheus text exposition, or OpenMetrics when the Accept header asks for it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from prometheus_client.exposition import choose_encoder
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from service.metrics.registry import Metrics


def render_metrics(metrics: Metrics, accept: str) -> tuple[bytes, str]:
    """The exposition body and its content type, negotiated from an Accept header."""
    encode, content_type = choose_encoder(accept)
    return encode(metrics.scrape_registry), content_type


def metrics_endpoint(metrics: Metrics) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette endpoint serving `metrics`; mount it with `app.add_route("/metrics", ...)`."""

    async def serve_metrics(request: Request) -> Response:
        # In multiprocess mode a scrape reads and merges every worker's files: keep that
        # file work off the event loop that is serving requests.
        body, content_type = await run_in_threadpool(
            render_metrics, metrics, request.headers.get("accept", "")
        )
        return Response(body, media_type=content_type, headers={"Cache-Control": "no-store"})

    return serve_metrics
