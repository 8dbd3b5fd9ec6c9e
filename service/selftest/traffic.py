"""Concurrent HTTP traffic for the checks, spread over many connections and so over every worker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass(frozen=True, slots=True)
class Call:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    json: Any = None


@dataclass(frozen=True, slots=True)
class Reply:
    sent_at: float
    status: int
    headers: httpx.Headers
    body: bytes

    def data(self) -> dict[str, Any]:
        """The JSON object in the body; empty when there is none."""
        try:
            data = httpx.Response(self.status, content=self.body).json()
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def code(self) -> str | None:
        """The `code` of a problem+json body or a verify result."""
        code = self.data().get("code")
        return str(code) if code is not None else None


def key_header(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def _client(base_url: str, concurrency: int) -> httpx.AsyncClient:
    # No keep-alive: each request accepts anew, so the kernel (or a proxy) spreads them over every
    # worker or instance instead of pinning a few warm connections to one of them.
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)
    return httpx.AsyncClient(base_url=base_url, limits=limits, timeout=10)


async def _send(client: httpx.AsyncClient, call: Call) -> Reply:
    sent_at = time.monotonic()
    response = await client.request(call.method, call.path, headers=call.headers, json=call.json)
    return Reply(sent_at, response.status_code, response.headers, response.content)


async def burst(base_url: str, calls: list[Call], *, concurrency: int) -> list[Reply]:
    """Send every call, `concurrency` at a time; replies in the order of `calls`."""
    gate = asyncio.Semaphore(concurrency)
    async with _client(base_url, concurrency) as client:

        async def one(call: Call) -> Reply:
            async with gate:
                return await _send(client, call)

        return list(await asyncio.gather(*(one(call) for call in calls)))


async def in_turn(base_url: str, calls: list[Call]) -> list[Reply]:
    """Send the calls one after another on one connection."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        return [await _send(client, call) for call in calls]


async def hammer(
    base_url: str,
    make_call: Callable[[], Call],
    *,
    concurrency: int,
    stop: asyncio.Event,
    into: list[Reply] | None = None,
) -> list[Reply]:
    """Send calls back to back from `concurrency` tasks until `stop` is set; the replies, also
    appended to `into` as they come (for a caller watching them)."""
    replies: list[Reply] = [] if into is None else into
    async with _client(base_url, concurrency) as client:

        async def loop() -> None:
            while not stop.is_set():
                replies.append(await _send(client, make_call()))

        await asyncio.gather(*(loop() for _ in range(concurrency)))
    return replies


@dataclass(frozen=True, slots=True)
class Watch:
    """How long `hammer_across` goes on after the action: until `min_late` replies to requests
    sent `late_after_s` or more after it are in (at least `observe_s`, at most `max_observe_s`).
    A starved client (a busy host) sends fewer requests per second: it watches longer."""

    late_after_s: float
    min_late: int
    observe_s: float
    max_observe_s: float = 10.0


async def hammer_across(
    base_url: str, call: Call, action: Callable[[], Awaitable[object]], watch: Watch
) -> tuple[list[Reply], float]:
    """Send `call` back to back from 8 tasks while `action` runs and then as `watch` says; the
    replies and when (monotonic) the action ended."""
    stop = asyncio.Event()
    replies: list[Reply] = []
    traffic = asyncio.create_task(
        hammer(base_url, lambda: call, concurrency=8, stop=stop, into=replies)
    )
    try:
        await action()
        acted_at = time.monotonic()
        late_from = acted_at + watch.late_after_s
        while True:
            elapsed = time.monotonic() - acted_at
            late = sum(1 for reply in replies if reply.sent_at >= late_from)
            if elapsed >= watch.max_observe_s or (
                elapsed >= watch.observe_s and late >= watch.min_late
            ):
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await traffic
    return replies, acted_at
