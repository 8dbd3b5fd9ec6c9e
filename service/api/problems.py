"""Every error as RFC 9457 problem+json with a stable `code`; the one place codes meet statuses."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from service.errors import (
    DatabaseUnavailable,
    GatekeyError,
    InvalidInput,
    KeyRejected,
    LimiterUnavailable,
    MissingScopes,
    NotFound,
    RateLimited,
    TooManyFailures,
)
from service.ratelimit.decision import RateLimitDecision
from service.results import KeyCheckResult

logger = logging.getLogger("gatekey.api")

PROBLEM_JSON = "application/problem+json"
# Every other rejection is 401: no usable credential. A disabled key is one, known and authentic,
# that an admin has switched off for now: refused (403) rather than challenged, as FORBIDDEN is.
_KEY_STATUS = {
    KeyCheckResult.FORBIDDEN: 403,
    KeyCheckResult.DISABLED: 403,
    KeyCheckResult.RATE_LIMITED: 429,
    KeyCheckResult.USAGE_EXCEEDED: 429,
    KeyCheckResult.RATE_LIMITER_UNAVAILABLE: 503,
}
_HTTP_CODES = {
    400: "MALFORMED_BODY",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    431: "HEADERS_TOO_LARGE",
}


def problem(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {
        "type": f"urn:gatekey:problem:{code.lower().replace('_', '-')}",
        "title": code.replace("_", " ").capitalize(),
        "status": status,
        "detail": detail,
        "code": code,
    }
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def ratelimit_headers(decision: RateLimitDecision) -> dict[str, str]:
    """Both header styles: the deployed `RateLimit-*` trio and the IETF draft's fields, each
    describing the binding limit (the refusing one, or the one closest to exhaustion), with
    `RateLimit-Policy` listing every enforced limit. No `Retry-After` when no wait would help
    (the request costs more than a limit's burst)."""
    if decision.usage_exceeded:  # the limits were not reached: only when credits come back
        retry = decision.retry_after_s
        return {"Retry-After": str(max(1, math.ceil(retry)))} if retry >= 0 else {}
    reset = math.ceil(decision.reset_s)
    policy = decision.policy_header
    if policy is None:
        policy = f'"{decision.name}";q={decision.limit};w={decision.window_s}'
    headers = {
        "RateLimit-Limit": str(decision.limit),
        "RateLimit-Remaining": str(decision.remaining),
        "RateLimit-Reset": str(reset),
        "RateLimit-Policy": policy,
        "RateLimit": f'"{decision.name}";r={decision.remaining};t={reset}',
    }
    if not decision.allowed and decision.retry_after_s >= 0:
        headers["Retry-After"] = str(max(1, math.ceil(decision.retry_after_s)))
    return headers


def error_response(error: GatekeyError) -> JSONResponse:
    """Map a domain error to its response (also used by endpoints that answer without raising)."""
    if isinstance(error, RateLimited | MissingScopes):
        status = 429 if isinstance(error, RateLimited) else 403
        return problem(status, error.code, error.message, ratelimit_headers(error.decision))
    if isinstance(error, TooManyFailures):
        retry_after = str(max(1, math.ceil(error.retry_after_s)))
        return problem(429, error.code, error.message, {"Retry-After": retry_after})
    if isinstance(error, LimiterUnavailable | DatabaseUnavailable):
        return problem(503, error.code, error.message, {"Retry-After": "1"})
    if isinstance(error, KeyRejected):
        status = _KEY_STATUS.get(error.code, 401)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return problem(status, error.code, error.message, headers)
    if isinstance(error, NotFound):
        return problem(404, error.code, error.message)
    if isinstance(error, InvalidInput):
        return problem(422, error.code, error.message)
    return problem(400, error.code, error.message)


async def _on_gatekey_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GatekeyError)
    return error_response(exc)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        parts.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
    return problem(422, "VALIDATION_ERROR", "; ".join(parts) or "invalid request")


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
    return problem(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled_error", extra={"path": request.url.path})
    return problem(500, "INTERNAL_ERROR", "an unexpected error occurred")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(GatekeyError, _on_gatekey_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(HTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)


_PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
    },
}


def document_problems(openapi: dict[str, Any]) -> dict[str, Any]:
    """Make the OpenAPI document say what is sent: every 4xx/5xx is problem+json, not FastAPI's
    `HTTPValidationError`."""
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Problem"] = _PROBLEM_SCHEMA
    problem_content = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for operations in openapi.get("paths", {}).values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                if status[:1] in ("4", "5"):
                    response["content"] = problem_content
    return openapi
