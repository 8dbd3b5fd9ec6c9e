"""`RequestSizeLimit`: request headers over `MAX_HEADER_BYTES` get 431 and bodies over
`MAX_BODY_BYTES` get 413, before the body is buffered anywhere.

Pure ASGI by hand because no library does it: uvicorn has no body limit (and, with httptools, no
header limit either), Starlette has no size middleware, and FastAPI reads a JSON body whole before
any dependency (the key check included) runs.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.problems import problem


class BodyTooLarge(HTTPException):
    """Raised from `receive` once a streamed body passes the cap: FastAPI lets an
    `HTTPException` through its body parsing, and the problem handlers answer it."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


class RequestSizeLimit:
    """Refuses oversized requests with problem+json; everything else passes untouched."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_header_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        header_bytes = len(scope.get("raw_path") or b"") + len(scope.get("query_string", b""))
        header_bytes += sum(len(name) + len(value) + 4 for name, value in headers)
        if header_bytes > self.max_header_bytes:
            detail = f"the request line and headers are larger than {self.max_header_bytes} bytes"
            await problem(431, "HEADERS_TOO_LARGE", detail, {"Connection": "close"})(
                scope, receive, send
            )
            return
        declared = _content_length(headers)
        if declared is not None:
            # uvicorn delivers exactly Content-Length bytes: checked once, the body needs no count.
            if declared > self.max_body_bytes:
                too_large = BodyTooLarge(self.max_body_bytes)
                await problem(413, "PAYLOAD_TOO_LARGE", too_large.detail, {"Connection": "close"})(
                    scope, receive, send
                )
                return
            await self.app(scope, receive, send)
            return
        await self.app(scope, self._counting(receive), send)

    def _counting(self, receive: Receive) -> Receive:
        """A chunked body is counted as it streams and cut off at the cap."""
        received = 0
        limit = self.max_body_bytes

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        return counted


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # uvicorn refuses such a request before it gets here
    return None
