"""The reference contender: a bare FastAPI endpoint answering what `/v1/whoami` answers."""

from __future__ import annotations

from fastapi import FastAPI

# The same fields and sizes as gatekey's `/v1/whoami`, so every contender writes a similar body.
WHOAMI_BODY: dict[str, object] = {
    "id": "0b7e6a52-3f4e-4c55-9b8f-2d1e0c9a7f31",
    "name": "bench",
    "display_prefix": "gk_4Hq9",
    "owner": None,
    "scopes": [],
    "rate_limit": "100000000/minute",
    "expires_at": None,
    "metadata": {},
}


def create_app() -> FastAPI:
    """uvicorn factory (`--factory bench.bare_app:create_app`)."""
    app = FastAPI()

    @app.get("/v1/whoami")
    async def whoami() -> dict[str, object]:
        return WHOAMI_BODY

    return app
