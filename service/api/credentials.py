"""What a request presents: its key (`X-API-Key` or `Authorization: Bearer`) and its address."""

from __future__ import annotations

from starlette.types import Scope

from service.errors import ConflictingCredentials, KeyRejected
from service.results import KeyCheckResult


def presented_key(headers: list[tuple[bytes, bytes]]) -> str:
    """The key from raw ASGI headers; raises `MISSING_KEY` when there is none and
    `CONFLICTING_CREDENTIALS` when two different keys are sent (the same key twice is fine):
    letting one silently win would check a key other than the one a proxy or log looked at."""
    keys: set[str] = set()
    for name, value in headers:
        if name == b"x-api-key":
            if value.strip():
                keys.add(value.decode("latin-1").strip())
        elif name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                keys.add(credentials.strip())
    if len(keys) == 1:
        return keys.pop()
    if keys:
        raise ConflictingCredentials(
            "the request carries two different keys (X-API-Key, Authorization: Bearer): send one"
        )
    raise KeyRejected(
        KeyCheckResult.MISSING_KEY, "send the key in X-API-Key or Authorization: Bearer"
    )


def client_address(scope: Scope) -> str | None:
    """The peer address, already taken from `X-Forwarded-For` by uvicorn's proxy-headers
    middleware when the peer is one of `TRUSTED_PROXIES` (see `service.workers.supervisor`)."""
    client = scope.get("client")
    return str(client[0]) if client else None
