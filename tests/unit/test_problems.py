"""Error mapping: each domain error's status, problem+json body and headers."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from service.api.problems import error_response, install_error_handlers, ratelimit_headers
from service.errors import (
    DatabaseUnavailable,
    Forbidden,
    GatekeyError,
    InvalidInput,
    KeyRejected,
    LimiterUnavailable,
    NotFound,
    RateLimited,
)
from service.ratelimit.decision import RateLimitDecision
from service.results import KeyCheckResult
from tests.unit.records import key_record

NOW = datetime(2025, 3, 1, tzinfo=UTC)
RECORD = key_record(
    id=uuid.UUID(int=7),
    owner="team",
    rate_limits=("100/minute",),
    created_at=NOW,
)
LIMITED = RateLimitDecision(
    allowed=False,
    limit=100,
    remaining=0,
    reset_s=17.2,
    retry_after_s=0.4,
    window_s=60,
    is_fallback=False,
)
ADMITTED = RateLimitDecision(
    allowed=True,
    limit=100,
    remaining=42,
    reset_s=17.2,
    retry_after_s=0,
    window_s=60,
    is_fallback=False,
)


def _body(response: object) -> dict[str, object]:
    body: dict[str, object] = json.loads(response.body)  # type: ignore[attr-defined]
    return body


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (KeyRejected(KeyCheckResult.MISSING_KEY, "send a key"), 401, "MISSING_KEY"),
        (KeyRejected(KeyCheckResult.MALFORMED, "malformed"), 401, "MALFORMED"),
        (KeyRejected(KeyCheckResult.NOT_FOUND, "unknown"), 401, "NOT_FOUND"),
        (KeyRejected(KeyCheckResult.REVOKED, "revoked"), 401, "REVOKED"),
        (KeyRejected(KeyCheckResult.EXPIRED, "expired"), 401, "EXPIRED"),
        (KeyRejected(KeyCheckResult.DISABLED, "disabled"), 403, "DISABLED"),
        (Forbidden("needs admin"), 403, "FORBIDDEN"),
        (NotFound("no key"), 404, "NOT_FOUND"),
        (InvalidInput("bad limit"), 422, "VALIDATION_ERROR"),
        (DatabaseUnavailable("pool timeout"), 503, "DATABASE_UNAVAILABLE"),
        (LimiterUnavailable(), 503, "RATE_LIMITER_UNAVAILABLE"),
        (RateLimited(RECORD, LIMITED), 429, "RATE_LIMITED"),
        (GatekeyError("something"), 400, "ERROR"),
    ],
)
def test_each_error_maps_to_status_and_problem_body(
    error: GatekeyError, status: int, code: str
) -> None:
    response = error_response(error)
    assert response.status_code == status
    assert response.media_type == "application/problem+json"
    assert response.headers["content-type"] == "application/problem+json"
    assert _body(response) == {
        "type": f"urn:gatekey:problem:{code.lower().replace('_', '-')}",
        "title": code.replace("_", " ").capitalize(),
        "status": status,
        "detail": error.message,
        "code": code,
    }


def test_type_and_title_spelled_out() -> None:
    body = _body(error_response(KeyRejected(KeyCheckResult.RATE_LIMITER_UNAVAILABLE, "down")))
    assert (body["type"], body["title"]) == (
        "urn:gatekey:problem:rate-limiter-unavailable",
        "Rate limiter unavailable",
    )


@pytest.mark.parametrize(
    "code",
    [
        KeyCheckResult.MISSING_KEY,
        KeyCheckResult.MALFORMED,
        KeyCheckResult.NOT_FOUND,
        KeyCheckResult.REVOKED,
        KeyCheckResult.EXPIRED,
    ],
)
def test_401_asks_for_a_bearer_token(code: KeyCheckResult) -> None:
    response = error_response(KeyRejected(code, "no"))
    assert response.headers["www-authenticate"] == "Bearer"
    assert "retry-after" not in response.headers


def test_a_disabled_key_is_refused_not_asked_for_again() -> None:
    """403 without a challenge: the key is known and authentic, another one is not what is
    missing; an admin enabling it is."""
    response = error_response(KeyRejected(KeyCheckResult.DISABLED, "the API key is disabled"))
    assert "www-authenticate" not in response.headers


@pytest.mark.parametrize("error", [DatabaseUnavailable("down"), LimiterUnavailable()])
def test_503_carries_retry_after(error: GatekeyError) -> None:
    assert error_response(error).headers["retry-after"] == "1"


def test_429_carries_retry_after_and_both_header_styles() -> None:
    headers = error_response(RateLimited(RECORD, LIMITED)).headers
    assert headers["retry-after"] == "1"  # 0.4 s rounds up to a whole second
    assert headers["ratelimit-limit"] == "100"
    assert headers["ratelimit-remaining"] == "0"
    assert headers["ratelimit-reset"] == "18"
    assert headers["ratelimit-policy"] == '"default";q=100;w=60'
    assert headers["ratelimit"] == '"default";r=0;t=18'


def test_admitted_decision_has_both_styles_and_no_retry_after() -> None:
    assert ratelimit_headers(ADMITTED) == {
        "RateLimit-Limit": "100",
        "RateLimit-Remaining": "42",
        "RateLimit-Reset": "18",
        "RateLimit-Policy": '"default";q=100;w=60',
        "RateLimit": '"default";r=42;t=18',
    }


def test_retry_after_rounds_up_whole_seconds() -> None:
    decision = RateLimitDecision(
        allowed=False,
        limit=1,
        remaining=0,
        reset_s=3600,
        retry_after_s=3599.01,
        window_s=3600,
        is_fallback=False,
    )
    assert ratelimit_headers(decision)["Retry-After"] == "3600"


class _Body(BaseModel):
    key: str


@pytest.fixture(scope="module")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """A bare app with the handlers installed, driven in-process (no network)."""
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/raise/not-found")
    async def raise_not_found() -> None:
        raise NotFound("no key with id 1")

    @app.get("/raise/unexpected")
    async def raise_unexpected() -> None:
        raise RuntimeError("secret internals")

    @app.post("/body")
    async def body(payload: _Body) -> dict[str, str]:
        return {"key": payload.key}

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://unit") as http:
        yield http


async def _problem(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = response.json()
    assert set(body) == {"type", "title", "status", "detail", "code"}
    assert (body["status"], body["code"]) == (status, code)
    return body


async def test_domain_error_raised_in_a_route(client: httpx.AsyncClient) -> None:
    body = await _problem(await client.get("/raise/not-found"), 404, "NOT_FOUND")
    assert body["detail"] == "no key with id 1"


async def test_unexpected_error_is_a_generic_500(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = await client.get("/raise/unexpected")
    body = await _problem(response, 500, "INTERNAL_ERROR")
    assert body["detail"] == "an unexpected error occurred"
    assert "secret internals" not in response.text
    assert "Traceback" not in response.text
    assert any(r.message == "unhandled_error" for r in caplog.records)


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"not json", "application/json"),
        (b"", "application/json"),
        (b'["gk_x"]', "application/json"),
        (b'{"token": "gk_x"}', "application/json"),
        (b'{"key": 5}', "application/json"),
        (b'{"key": "gk_x"', "application/json"),
    ],
)
async def test_bad_bodies_are_422_validation_error(
    client: httpx.AsyncClient, content: bytes, content_type: str
) -> None:
    response = await client.post("/body", content=content, headers={"content-type": content_type})
    body = await _problem(response, 422, "VALIDATION_ERROR")
    assert body["detail"]


async def test_unknown_route_and_method_are_problems(client: httpx.AsyncClient) -> None:
    await _problem(await client.get("/nowhere"), 404, "NOT_FOUND")
    await _problem(await client.delete("/body"), 405, "METHOD_NOT_ALLOWED")
