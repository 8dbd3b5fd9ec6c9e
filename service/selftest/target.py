"""The deployment under test: its HTTP address, and when none is given a server of our own."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from service.selftest.gatekey_cli import GatekeyCli
from service.selftest.model import SelftestAborted
from service.selftest.prom import Scrape, parse_scrape
from service.selftest.sampling import RSS

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


class Deployment:
    """A running gatekey reached over HTTP."""

    def __init__(self, url: str, client: httpx.AsyncClient) -> None:
        self.url = url.rstrip("/")
        self.client = client

    async def scrape(self) -> Scrape:
        """The metrics; none when `/metrics` does not answer 200 (the checks then fail on them)."""
        response = await self.client.get(f"{self.url}/metrics")
        return parse_scrape(response.text if response.status_code == 200 else "")

    async def worker_pids(self) -> set[str]:
        return set((await self.scrape()).by_label(RSS, "pid"))

    async def wait_ready(
        self, timeout_s: float, process: asyncio.subprocess.Process | None = None
    ) -> None:
        """Until `/readyz` answers 200; a server process that exits first stops the wait."""
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            if process is not None and process.returncode is not None:
                raise SelftestAborted(f"the server exited with code {process.returncode}")
            try:
                response = await self.client.get(f"{self.url}/readyz", timeout=2)
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text[:200]}"
            except httpx.TransportError as exc:
                last = type(exc).__name__
            await asyncio.sleep(0.2)
        raise SelftestAborted(f"{self.url} not ready after {timeout_s:.0f} s: {last}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _last_line(log: Path) -> str:
    lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
    return lines[-1] if lines else "no output"


@contextlib.asynccontextmanager
async def server_process(
    command: list[str], *, env: dict[str, str], port: int, log: Path, client: httpx.AsyncClient
) -> AsyncIterator[Deployment]:
    """Run a server command listening on `port` until `/readyz` answers; stopped (by its pid)
    afterwards. Its output goes to `log`, whose last line explains a server that never came up."""
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            *command, env=env, stdout=sink, stderr=sink, start_new_session=True
        )
    deployment = Deployment(f"http://127.0.0.1:{port}", client)
    try:
        try:
            await deployment.wait_ready(READY_TIMEOUT_S, process)
        except SelftestAborted as exc:
            raise SelftestAborted(f"{exc}; server log: {_last_line(log)}") from None
        yield deployment
    finally:
        await _stop(process)


@contextlib.asynccontextmanager
async def own_server(
    cli: GatekeyCli, *, workers: int | None, workdir: Path, client: httpx.AsyncClient
) -> AsyncIterator[Deployment]:
    """`gatekey serve` on a free port with the settings the CLI runs with."""
    port = free_port()
    command = [*cli.executable, "serve", "--host", "127.0.0.1", "--port", str(port)]
    if workers is not None:
        command += ["--workers", str(workers)]
    async with server_process(
        command, env=cli.env(), port=port, log=workdir / "server.log", client=client
    ) as deployment:
        yield deployment


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
    except TimeoutError:
        # The server runs in a session of its own: its group is exactly the server and its workers.
        os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
