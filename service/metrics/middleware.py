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


def scoped_route_template(scope: Scope) -> str | None:
    """The matched route's path template (`/v1/admin/keys/{key_id}`) when routing left it in scope.

    Recent FastAPI no longer copies included routers' routes into the app: `scope["route"]` is
    then the route as its router declared it, without the prefixes, and only FastAPI's own scope
    entry holds the full template. Starlette routing (and older FastAPI) sets `scope["route"]`.
    """
    context = scope.get("fastapi", _NO_SCOPE).get("effective_route_context")
    template = getattr(context, "path_format", None) or getattr(
        scope.get("route"), "path_format", None
    )
    return template if isinstance(template, str) else None


def endpoint_route_template(router: object, endpoint: object) -> str:
    """The template of the top-level route serving `endpoint`: FastAPI leaves no route in scope
    for plain Starlette routes (`add_route`: /metrics, /docs, /openapi.json), only the endpoint."""
    for route in getattr(router, "routes", ()):
        template = getattr(route, "path_format", None)
        if getattr(route, "endpoint", None) is endpoint and isinstance(template, str):
            return template
    return UNMATCHED


class RequestMetricsMiddleware:
    """Counts every HTTP request once and observes its duration, by method, route and status.

    Pure ASGI (not BaseHTTPMiddleware, which costs a task and a stream per request). A request is
    counted as its response starts, before the client can see it, so a scrape taken after the
    answers arrived already includes them. Requests served by the `skip_routes` templates (the
    scrape endpoint) are not counted, so totals equal requests served; templates rather than
    paths, so a `--root-path` prefix changes nothing. A request that raises before answering
    counts as 500 (what the server answers), one cancelled before answering as 499.
    """

    def __init__(
        self, app: ASGIApp, *, metrics: Metrics, skip_routes: Iterable[str] = ("/metrics",)
    ) -> None:
        self.app = app
        self._skip_routes = frozenset(skip_routes)
        self._requests = metrics.http_requests
        self._durations = metrics.http_request_duration
        # Label children cached by (method, route, status): `labels()` takes a lock and builds
        # tuples on every call, this is one dict lookup.
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._endpoint_templates: dict[object, str] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        is_counted = False
        duration: Histogram | None = None

        async def send_counting(message: Message) -> None:
            nonlocal is_counted, duration
            if message["type"] == "http.response.start" and not is_counted:
                is_counted = True
                duration = self._count(scope, message["status"])
            await send(message)

        failure_status = 500
        try:
            await self.app(scope, receive, send_counting)
        except asyncio.CancelledError:
            failure_status = CLIENT_CLOSED_REQUEST
            raise
        finally:
            if not is_counted:
                duration = self._count(scope, failure_status)
            if duration is not None:
                duration.observe(perf_counter() - started)

    def _count(self, scope: Scope, status: int) -> Histogram | None:
        """Count the request; its duration histogram, or None for a skipped route."""
        route = self._route_template(scope)
        if route in self._skip_routes:
            return None
        method = scope["method"]
        if method not in _KNOWN_METHODS:
            method = "other"
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self._requests.labels(method, route, str(status)),
                self._durations.labels(method, route),
            )
        children[0].inc()
        return children[1]

    def _route_template(self, scope: Scope) -> str:
        template = scoped_route_template(scope)
        if template is not None:
            return template
        endpoint = scope.get("endpoint")
        if endpoint is None:
            return UNMATCHED
        template = self._endpoint_templates.get(endpoint)
        if template is None:
            template = endpoint_route_template(scope.get("router"), endpoint)
            self._endpoint_templates[endpoint] = template
        return template
