"""The contenders: how each server starts, what each run sends, and what every answer must be."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.gatekey_setup import malformed
from bench.report import BARE, GATEKEY, LABELS, MALFORMED, SLOWAPI
from bench.wrk import WrkResult
from service.harness.gatekey import serve_command
from service.harness.processes import free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PATH = "/v1/whoami"
SERVERS = ("bare", "slowapi", "gatekey")


class BenchFailed(RuntimeError):
    """The run measured something other than what it claims (wrong status, errors)."""


@dataclass(frozen=True, slots=True)
class Probe:
    """One measured contender: the header it sends and the answer every request must get."""

    name: str
    key: str
    status: int
    code: str | None = None


@dataclass(frozen=True, slots=True)
class Launch:
    """How to start one contender's server, and what to measure on it."""

    name: str
    port: int
    command: list[str]
    env: dict[str, str]
    probe_path: str
    probes: list[Probe] = field(default_factory=list)


def _uvicorn_command(factory: str, port: int, workers: int) -> list[str]:
    # What `gatekey serve` configures: uvloop + httptools, no access log, backlog 4096.
    return [
        str(BIN / "python"), "-m", "uvicorn", "--factory", factory, "--app-dir", str(ROOT),
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
        "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning",
        "--backlog", "4096",
    ]  # fmt: skip


def launches(
    wanted: list[str], *, workers: int, redis_url: str, key: str, gatekey_env: dict[str, str]
) -> Iterator[Launch]:
    """The servers to start, in order: bare, slowapi, gatekey (each alone on the machine)."""
    if "bare" in wanted:
        port = free_port()
        command = _uvicorn_command("bench.bare_app:create_app", port, workers)
        yield Launch("bare", port, command, {}, PATH, [Probe(BARE, key, 200)])
    if "slowapi" in wanted:
        port = free_port()
        command = _uvicorn_command("bench.slowapi_app:create_app", port, workers)
        env = {"BENCH_REDIS_URL": redis_url}
        yield Launch("slowapi", port, command, env, PATH, [Probe(SLOWAPI, key, 200)])
    if "gatekey" in wanted:
        port = free_port()
        command = serve_command(port, workers=workers)
        probes = [
            Probe(GATEKEY, key, 200),
            Probe(MALFORMED, malformed(key), 401, "MALFORMED"),
        ]
        yield Launch("gatekey", port, command, gatekey_env, "/readyz", probes)


def check_one(url: str, probe: Probe) -> None:
    """One request before the load: the status (and error code) every request must get."""
    answer = httpx.get(url, headers={"X-API-Key": probe.key}, timeout=5.0)
    is_problem = answer.headers.get("content-type", "").endswith("json")
    code = answer.json().get("code") if answer.status_code != 200 and is_problem else None
    if answer.status_code != probe.status or code != probe.code:
        expected = f"{probe.status} {probe.code or ''}".strip()
        got = f"{answer.status_code}: {answer.text[:300]}"
        raise BenchFailed(f"{LABELS[probe.name]}: expected {expected}, got {got}")


def verify(probe: Probe, result: WrkResult) -> None:
    """A benchmark that measured 401s or 429s instead of 200s would be a lie: refuse it."""
    label = LABELS[probe.name]
    if result.requests == 0:
        raise BenchFailed(f"{label}: wrk completed no request")
    if probe.status == 200 and result.non_2xx:
        count = f"{result.non_2xx:,} of {result.requests:,}"
        raise BenchFailed(f"{label}: {count} answers were not 2xx; every one must be 200")
    if probe.status != 200 and result.non_2xx != result.requests:
        count = f"{result.requests - result.non_2xx:,} of {result.requests:,}"
        raise BenchFailed(f"{label}: {count} answers were 2xx; every one must be {probe.status}")
