"""Drive wrk with `keys.lua`: keys rotated from a file, figures read from one JSON line."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

WRK_MISSING = "wrk is not installed: apt-get install wrk (or build it from github.com/wg/wrk)"
SCRIPT = Path(__file__).with_name("keys.lua")
_MARKER = "BENCH_JSON "


@dataclass(frozen=True, slots=True)
class LoadSpec:
    connections: int
    threads: int
    timeout_s: int = 5


@dataclass(frozen=True, slots=True)
class KeyWalk:
    """The keys a load sends, one per request in file order from `offset`, wrapping at `size`."""

    file: Path
    size: int
    offset: int = 0


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    duration_s: float
    non_2xx: int
    socket_errors: int  # connect, read and write errors
    timeouts: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


def wrk_path() -> str | None:
    return shutil.which("wrk")


def parse_output(stdout: str) -> WrkResult:
    """The figures from the `done()` line; raises `ValueError` when wrk printed none."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(_MARKER):
            raw = json.loads(line.removeprefix(_MARKER))
            return WrkResult(
                requests=raw["requests"],
                duration_s=raw["duration_us"] / 1e6,
                non_2xx=raw["non_2xx"],
                socket_errors=raw["connect_errors"] + raw["read_errors"] + raw["write_errors"],
                timeouts=raw["timeouts"],
                p50_ms=raw["p50_us"] / 1000,
                p99_ms=raw["p99_us"] / 1000,
                max_ms=raw["max_us"] / 1000,
            )
    raise ValueError(f"wrk printed no figures:\n{stdout}")


def run_wrk(url: str, walk: KeyWalk, spec: LoadSpec, duration_s: float) -> WrkResult:
    """One bounded wrk run; wrk stops itself after `duration_s` (plus a hard cap here)."""
    command = [
        wrk_path() or "wrk",
        f"--threads={spec.threads}",
        f"--connections={spec.connections}",
        f"--duration={max(1, round(duration_s))}s",
        f"--timeout={spec.timeout_s}s",
        f"--script={SCRIPT}",
        url,
        "--",
        str(walk.file),
        str(walk.offset),
        str(spec.threads),
    ]
    finished = subprocess.run(
        command, capture_output=True, text=True, timeout=duration_s + 60, check=False
    )
    if finished.returncode != 0:
        raise RuntimeError(f"wrk exited {finished.returncode}: {finished.stderr.strip()}")
    return parse_output(finished.stdout)


def next_offset(walk: KeyWalk, result: WrkResult, spec: LoadSpec) -> int:
    """Where a following load starts so that it sends no key this one sent: wrk reports the
    answered requests, and up to one more per connection was sent but not answered."""
    return walk.offset + result.requests + spec.connections
