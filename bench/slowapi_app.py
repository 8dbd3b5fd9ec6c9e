"""The incumbent contender: the bare endpoint guarded by slowapi with its Redis storage."""

from __future__ import annotations

import os

from fastapi import FastAPI, Request
from slowapi import Limiter, _rate_limit_exceeded_handler
from slowapi.errors import RateLimitExceeded

from bench.bare_app import WHOAMI_BODY

# Far above anything a 10 s run reaches, so every request pays the check and none is refused.
UNREACHED_LIMIT = "100000000/minute"
REDIS_URL_ENV = "BENCH_REDIS_URL"


def api_key(request: Request) -> str:
    """slowapi's key function: limit per presented key, as gatekey does."""
    return request.headers.get("x-api-key", "")


def create_app() -> FastAPI:
    """uvicorn factory (`--factory bench.slowapi_app:create_app`)."""
    limiter = Limiter(
        key_func=api_key,
        storage_uri=os.environ.get(REDIS_URL_ENV, "redis://127.0.0.1:6379/0"),
        key_prefix="gatekey-bench",
    )
    app = FastAPI()
    app.state.limiter = limiter
    app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)  # type: ignore[arg-type]

    @app.get("/v1/whoami")
    @limiter.limit(UNREACHED_LIMIT)
    async def whoami(request: Request) -> dict[str, object]:
        return WHOAMI_BODY

    return app
