"""One server at a time: start it on a free port, wait until it answers, stop it by pid."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

STOP_GRACE_S = 20.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class RunningServer:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: the supervisor's children but multiprocessing's
        resource tracker."""
        children = psutil.Process(self.process.pid).children()
        return [c.pid for c in children if "resource_tracker" not in " ".join(c.cmdline())]

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class ServerFailed(RuntimeError):
    """The server exited or never became ready; the message carries its log tail."""


def _wait_ready(server: RunningServer, probe_path: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                code = server.process.returncode
                raise ServerFailed(f"server exited with {code}:\n{server.log_tail()}")
            try:
                if client.get(server.base_url + probe_path).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    raise ServerFailed(f"server not ready after {timeout_s:.0f} s:\n{server.log_tail()}")


def _stop(server: RunningServer) -> None:
    """SIGTERM the supervisor (it stops its workers); SIGKILL whatever outlives the grace."""
    workers: list[psutil.Process] = []
    if server.process.poll() is None:
        workers = [psutil.Process(pid) for pid in server.worker_pids()]
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    _, alive = psutil.wait_procs(workers, timeout=STOP_GRACE_S)
    for worker in alive:
        worker.kill()


@contextmanager
def serve(
    command: Sequence[str],
    *,
    port: int,
    env: Mapping[str, str],
    cwd: Path,
    log_path: Path,
    probe_path: str,
    ready_timeout_s: float = 60.0,
) -> Iterator[RunningServer]:
    """Run `command` (serving on `port`) until the block ends; its output goes to `log_path`."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(command), cwd=cwd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
        )
    server = RunningServer(process, f"http://127.0.0.1:{port}", log_path)
    try:
        _wait_ready(server, probe_path, ready_timeout_s)
        yield server
    finally:
        _stop(server)
