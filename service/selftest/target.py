"""The deployment under test: its HTTP address, and when none is given a server of our own."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx

from service.harness.gatekey import serve_command
from service.harness.processes import (
    HOST,
    ProcessFailed,
    free_port,
    serving_async,
    wait_until_async,
)
from service.selftest.gatekey_cli import GatekeyCli
from service.selftest.model import SelftestAborted
from service.selftest.prom import Scrape, parse_scrape
from service.selftest.sampling import RSS

SERVER_LOG = "server.log"  # our own server's output, in the run's working directory


class Deployment:
    """A running gatekey reached over HTTP."""

    def __init__(self, url: str, client: httpx.AsyncClient) -> None:
        self.url = url.rstrip("/")
        self.client = client
        self.last_answer = "no answer"  # from `/readyz`, for the message when it never says 200
        # The worker processes, when the self-test started the server and can see them.
        self.local_worker_pids: Callable[[], set[str]] | None = None

    async def scrape(self) -> Scrape:
        """The metrics; none when `/metrics` does not answer 200 (the checks then fail on them)."""
        response = await self.client.get(f"{self.url}/metrics")
        return parse_scrape(response.text if response.status_code == 200 else "")

    async def worker_pids(self) -> set[str]:
        return set((await self.scrape()).by_label(RSS, "pid"))

    async def is_ready(self) -> bool:
        try:
            response = await self.client.get(f"{self.url}/readyz", timeout=2)
        except httpx.TransportError as exc:
            self.last_answer = type(exc).__name__
            return False
        self.last_answer = f"{response.status_code} {response.text[:200]}"
        return response.status_code == 200

    async def wait_ready(self, timeout_s: float) -> None:
        """Until `/readyz` answers 200."""
        try:
            await wait_until_async(self.is_ready, what=self.url, timeout_s=timeout_s)
        except ProcessFailed as exc:
            raise SelftestAborted(f"{exc.reason}: {self.last_answer}") from None


@contextlib.asynccontextmanager
async def server_process(
    command: list[str], *, env: dict[str, str], port: int, log: Path, client: httpx.AsyncClient
) -> AsyncIterator[Deployment]:
    """Run a server command listening on `port` until `/readyz` answers; stopped (by its pid)
    afterwards. Its output goes to `log`, whose last line explains a server that never came up."""
    deployment = Deployment(f"http://{HOST}:{port}", client)
    async with contextlib.AsyncExitStack() as stack:
        try:
            server = await stack.enter_async_context(
                serving_async(
                    command, port=port, log=log, env=env, ready=lambda _: deployment.is_ready()
                )
            )
        except ProcessFailed as exc:
            last_line = exc.log_tail.splitlines()[-1] if exc.log_tail else "no output"
            raise SelftestAborted(f"{exc.reason}; server log: {last_line}") from None
        deployment.local_worker_pids = lambda: {str(pid) for pid in server.worker_pids()}
        yield deployment


@contextlib.asynccontextmanager
async def own_server(
    cli: GatekeyCli, *, workers: int | None, workdir: Path, client: httpx.AsyncClient
) -> AsyncIterator[Deployment]:
    """`gatekey serve` on a free port with the settings the CLI runs with."""
    port = free_port()
    async with server_process(
        serve_command(port, workers=workers),
        env=cli.env(),
        port=port,
        log=workdir / SERVER_LOG,
        client=client,
    ) as deployment:
        yield deployment
