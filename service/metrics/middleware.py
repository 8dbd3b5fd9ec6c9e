"""Request metrics: a pure ASGI middleware counting and timing each request by route template."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from time import perf_counter
from typing import Any

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.metrics.registry import Metrics

UNMATCHED = "unmatched"
# nginx's "client closed request": the request task was cancelled before any answer was sent.
CLIENT_CLOSED_REQUEST = 499
# Anything else would let a client mint label values at will.
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_NO_SCOPE: dict[str, Any] = {}


def route_template(scope: Scope) -> str:
    """The matched route's path template (`/v1/admin/keys/{key_id}`), or "unmatched".

    Recent FastAPI no longer copies included routers' routes into the app: `scope["route"]` is
    then the route as its router declared it, without the prefixes, and only FastAPI's own scope
    entry holds the full template. Plain Starlette routes (and older FastAPI) carry it on the route.
    """
    context = scope.get("fastapi", _NO_SCOPE).get("effective_route_context")
    template = getattr(context, "path_format", None)
    if template is None:
        template = getattr(scope.get("route"), "path_format", None)
    return template if isinstance(template, str) else UNMATCHED


class RequestMetricsMiddleware:
    """Counts every HTTP request once and observes its duration, by method, route and status.

    Pure ASGI (not BaseHTTPMiddleware, which costs a task and a stream per request). Requests to
    `skip_paths` (the scrape endpoint) are not counted, so totals equal requests served. A request
    that raises before answering counts as 500 (what the server answers), one cancelled before
    answering as 499; one that already answered keeps the status it sent.
    """

    def __init__(
        self, app: ASGIApp, *, metrics: Metrics, skip_paths: Iterable[str] = ("/metrics",)
    ) -> None:
        self.app = app
        self._skip_paths = frozenset(skip_paths)
        self._requests = metrics.http_requests
        self._durations = metrics.http_request_duration
        # Label children cached by (method, route, status): `labels()` takes a lock and builds
        # tuples on every call, this is one dict lookup.
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self._skip_paths:
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        status = 0

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        failure_status = 500
        try:
            await self.app(scope, receive, send_noting_status)
        except asyncio.CancelledError:
            failure_status = CLIENT_CLOSED_REQUEST
            raise
        finally:
            self._record(scope, status or failure_status, perf_counter() - started)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        method = scope["method"]
        if method not in _KNOWN_METHODS:
            method = "other"
        key = (method, route_template(scope), status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self._requests.labels(method, key[1], str(status)),
                self._durations.labels(method, key[1]),
            )
        children[0].inc()
        children[1].observe(seconds)
