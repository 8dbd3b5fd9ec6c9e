"""Drive wrk and read its figures from a Lua `done()` hook that prints one JSON line."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

WRK_MISSING = "wrk is not installed: apt-get install wrk (or build it from github.com/wg/wrk)"
_MARKER = "BENCH_JSON "

# wrk counts a response with status > 399 as `errors.status`: that is the "non-2xx" column
# (a 3xx would slip through, which is why every run starts with one checked request).
_DONE_SCRIPT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests":%d,"duration_us":%d,"bytes":%d,"non_2xx":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"timeouts":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\\n',
    "MARKER", summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read,
    e.write, e.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
""".replace("MARKER", _MARKER)


@dataclass(frozen=True, slots=True)
class LoadSpec:
    connections: int
    threads: int
    timeout_s: int = 5


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    duration_s: float
    non_2xx: int
    socket_errors: int
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
                socket_errors=sum(
                    raw[name]
                    for name in ("connect_errors", "read_errors", "write_errors", "timeouts")
                ),
                p50_ms=raw["p50_us"] / 1000,
                p99_ms=raw["p99_us"] / 1000,
                max_ms=raw["max_us"] / 1000,
            )
    raise ValueError(f"wrk printed no figures:\n{stdout}")


def run_wrk(url: str, headers: dict[str, str], spec: LoadSpec, duration_s: float) -> WrkResult:
    """One bounded wrk run; wrk stops itself after `duration_s` (plus a hard cap here)."""
    with tempfile.TemporaryDirectory(prefix="gatekey-bench-wrk-") as scratch:
        script = Path(scratch) / "done.lua"
        script.write_text(_DONE_SCRIPT)
        command = [
            wrk_path() or "wrk",
            f"--threads={spec.threads}",
            f"--connections={spec.connections}",
            f"--duration={max(1, round(duration_s))}s",
            f"--timeout={spec.timeout_s}s",
            f"--script={script}",
            *(f"--header={name}: {value}" for name, value in headers.items()),
            url,
        ]
        finished = subprocess.run(
            command, capture_output=True, text=True, timeout=duration_s + 30, check=False
        )
    if finished.returncode != 0:
        raise RuntimeError(f"wrk exited {finished.returncode}: {finished.stderr.strip()}")
    return parse_output(finished.stdout)
