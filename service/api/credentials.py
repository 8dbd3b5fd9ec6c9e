"""Where a request carries its key: `X-API-Key`, or `Authorization: Bearer`."""

from __future__ import annotations

from service.errors import KeyRejected
from service.results import KeyCheckResult


def presented_key(headers: list[tuple[bytes, bytes]]) -> str:
    """The key from raw ASGI headers; raises `MISSING_KEY` when there is none."""
    authorization = b""
    for name, value in headers:
        if name == b"x-api-key" and value:
            return value.decode("latin-1")
        if name == b"authorization":
            authorization = value
    scheme, _, credentials = authorization.decode("latin-1").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    raise KeyRejected(
        KeyCheckResult.MISSING_KEY, "send the key in X-API-Key or Authorization: Bearer"
    )
