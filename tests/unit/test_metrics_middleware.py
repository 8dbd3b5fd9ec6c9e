"""Request metrics by route template, scrapes left out, and the /metrics content negotiation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from service.metrics import Metrics, RequestMetricsMiddleware, create_metrics, metrics_endpoint

REQUESTS = "gatekey_http_requests_total"


def build_app(metrics: Metrics) -> FastAPI:
    """Routes as gatekey nests them: a prefixed router inside a prefixed router."""
    keys = APIRouter(prefix="/keys")

    @keys.get("/{key_id}")
    async def get_key(key_id: str) -> dict[str, str]:
        return {"id": key_id}

    admin = APIRouter(prefix="/v1/admin")
    admin.include_router(keys)
    app = FastAPI()
    app.include_router(admin)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("unexpected")

    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)
    app.add_route("/metrics", metrics_endpoint(metrics), methods=["GET"], include_in_schema=False)
    return app


def requests_total(registry: CollectorRegistry) -> float:
    return sum(
        sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name == REQUESTS
    )


def count(registry: CollectorRegistry, method: str, route: str, status: str) -> float | None:
    return registry.get_sample_value(REQUESTS, {"method": method, "route": route, "status": status})


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def client(registry: CollectorRegistry) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(Metrics(registry)), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as test_client:
        yield test_client


async def test_requests_are_labelled_by_route_template(
    client: httpx.AsyncClient, registry: CollectorRegistry
) -> None:
    for key_id in ("abc", "abc", "def", "ghi", "jkl"):
        assert (await client.get(f"/v1/admin/keys/{key_id}")).status_code == 200

    assert count(registry, "GET", "/v1/admin/keys/{key_id}", "200") == 5
    assert requests_total(registry) == 5
    duration = {"method": "GET", "route": "/v1/admin/keys/{key_id}"}
    assert registry.get_sample_value("gatekey_http_request_duration_seconds_count", duration) == 5
    exposition = (await client.get("/metrics")).text
    assert "abc" not in exposition
    assert "def" not in exposition


async def test_scrapes_of_metrics_are_not_counted(
    client: httpx.AsyncClient, registry: CollectorRegistry
) -> None:
    for _ in range(3):
        assert (await client.get("/metrics")).status_code == 200
    assert requests_total(registry) == 0

    await client.get("/v1/admin/keys/abc")
    await client.get("/metrics")
    assert requests_total(registry) == 1


async def test_plain_starlette_routes_in_fastapi_have_their_template(
    client: httpx.AsyncClient, registry: CollectorRegistry
) -> None:
    assert (await client.get("/openapi.json")).status_code == 200

    assert count(registry, "GET", "/openapi.json", "200") == 1
    assert requests_total(registry) == 1


async def test_starlette_app_is_labelled_and_scrapes_skipped(registry: CollectorRegistry) -> None:
    async def get_item(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.path_params["item_id"])

    metrics = Metrics(registry)
    app = Starlette(
        routes=[Route("/items/{item_id}", get_item), Route("/metrics", metrics_endpoint(metrics))],
        middleware=[Middleware(RequestMetricsMiddleware, metrics=metrics)],
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as starlette_client:
        await starlette_client.get("/items/abc")
        await starlette_client.get("/metrics")

    assert count(registry, "GET", "/items/{item_id}", "200") == 1
    assert requests_total(registry) == 1


async def test_unknown_path_is_unmatched_not_its_raw_path(
    client: httpx.AsyncClient, registry: CollectorRegistry
) -> None:
    assert (await client.get("/v1/admin/keys/abc/secret-token")).status_code == 404

    assert count(registry, "GET", "unmatched", "404") == 1
    assert "secret-token" not in (await client.get("/metrics")).text


async def test_unknown_method_is_other_on_the_route_template(
    client: httpx.AsyncClient, registry: CollectorRegistry
) -> None:
    assert (await client.request("BREW", "/v1/admin/keys/abc")).status_code == 405
    assert (await client.delete("/v1/admin/keys/abc")).status_code == 405

    assert count(registry, "other", "/v1/admin/keys/{key_id}", "405") == 1
    assert count(registry, "DELETE", "/v1/admin/keys/{key_id}", "405") == 1


async def test_exception_counts_once_as_500(
    client: httpx.AsyncClient, registry: CollectorRegistry
) -> None:
    assert (await client.get("/boom")).status_code == 500

    assert count(registry, "GET", "/boom", "500") == 1
    assert requests_total(registry) == 1


async def test_cancelled_request_counts_once_as_499(registry: CollectorRegistry) -> None:
    async def cancelled_app(scope: Scope, receive: Receive, send: Send) -> None:
        raise asyncio.CancelledError

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        raise AssertionError("nothing is sent")

    middleware = RequestMetricsMiddleware(cancelled_app, metrics=Metrics(registry))
    scope: Scope = {"type": "http", "method": "GET", "path": "/v1/whoami", "headers": []}
    with pytest.raises(asyncio.CancelledError):
        await middleware(scope, receive, send)

    assert count(registry, "GET", "unmatched", "499") == 1
    assert requests_total(registry) == 1


async def test_request_is_counted_before_its_response_leaves(registry: CollectorRegistry) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    seen_when_sent: list[float | None] = []

    async def send(message: Message) -> None:
        seen_when_sent.append(count(registry, "GET", "unmatched", "204"))

    middleware = RequestMetricsMiddleware(app, metrics=Metrics(registry))
    await middleware({"type": "http", "method": "GET", "path": "/", "headers": []}, receive, send)

    assert seen_when_sent == [1, 1]
    assert requests_total(registry) == 1


async def test_openmetrics_when_asked(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )

    assert response.headers["content-type"].startswith(
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    )
    assert response.text.endswith("# EOF\n")
    assert "# TYPE gatekey_http_requests counter" in response.text


async def test_prometheus_text_by_default(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")

    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "# TYPE gatekey_http_requests_total counter" in response.text
    assert "# EOF" not in response.text


async def test_two_apps_in_one_process_count_separately() -> None:
    first, second = create_metrics(), create_metrics()
    assert first.registry is not None
    assert second.registry is not None
    transport = httpx.ASGITransport(app=build_app(first))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as first_client:
        await first_client.get("/v1/admin/keys/abc")

    assert requests_total(first.registry) == 1
    assert requests_total(second.registry) == 0
