"""The honest reference: pure ASGI answering `/v1/whoami` with a body and headers built once.

gatekey answers `/v1/whoami` from a hand-written ASGI path with a cached body, while the bare
FastAPI contender routes, solves dependencies and serializes per request; against this one, the
ratio is what the key check and the limiter cost, nothing else.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from bench.bare_app import WHOAMI_BODY

# Serialized as Starlette's JSONResponse does, so the bytes equal the bare FastAPI answer's.
_BODY = json.dumps(WHOAMI_BODY, separators=(",", ":")).encode()
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(_BODY)).encode())]
_OK: dict[str, Any] = {"type": "http.response.start", "status": 200, "headers": _HEADERS}
_OK_BODY: dict[str, Any] = {"type": "http.response.body", "body": _BODY}
_NOT_FOUND: dict[str, Any] = {
    "type": "http.response.start",
    "status": 404,
    "headers": [(b"content-length", b"0")],
}
_EMPTY: dict[str, Any] = {"type": "http.response.body", "body": b""}


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
    elif scope["path"] == "/v1/whoami":
        await send(_OK)
        await send(_OK_BODY)
    else:
        await send(_NOT_FOUND)
        await send(_EMPTY)


def create_app() -> ASGIApp:
    """uvicorn factory (`--factory bench.bare_asgi:create_app`)."""
    return _app
