"""Liveness and readiness: `/readyz` names the dependency that failed."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from service.api.deps import StateDep
from service.config import RedisErrorPolicy

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """200 while the process runs."""
    return {"status": "ok"}


async def _database_status(state: StateDep) -> str:
    try:
        async with asyncio.timeout(1.0), state.database.get_session() as session:
            await session.execute(text("SELECT 1"))
    except Exception:  # any failure means not ready; the detail goes to the logs, not the client
        return "unavailable"
    return "ok"


@router.get("/readyz")
async def readyz(state: StateDep) -> JSONResponse:
    """Ready when the database answers; a degraded Redis is reported, and only fails readiness
    when `RATE_LIMIT_ON_REDIS_ERROR=deny` (otherwise the fallback keeps serving)."""
    checks = {"database": await _database_status(state), "redis": await state.limiter.health()}
    redis_blocks = (
        checks["redis"] != "ok"
        and state.settings.rate_limit_on_redis_error is RedisErrorPolicy.DENY
    )
    ready = checks["database"] == "ok" and not redis_blocks
    status = "unavailable" if not ready else "ok" if checks["redis"] == "ok" else "degraded"
    body = {"status": status, "checks": checks}
    return JSONResponse(body, status_code=200 if ready else 503)
