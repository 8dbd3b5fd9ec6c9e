"""The contenders: how each server starts, what each point sends, and what every answer must be."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.gatekey_setup import malformed
from bench.report import BARE, BARE_ASGI, FULL_LIMITS, GATEKEY, LABELS, MALFORMED, SLOWAPI
from bench.scenarios import Scenario, write_walk
from bench.wrk import KeyWalk, WrkResult
from service.harness.gatekey import serve_command
from service.harness.processes import free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PATH = "/v1/whoami"
SERVERS = (BARE, BARE_ASGI, SLOWAPI, GATEKEY)


class BenchFailed(RuntimeError):
    """The run cannot measure what it claims (a server answers the wrong status to a probe)."""


@dataclass(frozen=True, slots=True)
class Probe:
    """One measured point: the keys it sends and the answer every request must get."""

    name: str
    walk: KeyWalk
    first_key: str
    status: int
    code: str | None = None


@dataclass(frozen=True, slots=True)
class Launch:
    """How to start one contender's server."""

    name: str
    port: int
    command: list[str]
    env: dict[str, str]
    probe_path: str


def _uvicorn_command(factory: str, port: int, workers: int) -> list[str]:
    # What `gatekey serve` configures: uvloop + httptools, no access log, backlog 4096.
    return [
        str(BIN / "python"), "-m", "uvicorn", "--factory", factory, "--app-dir", str(ROOT),
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
        "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning",
        "--backlog", "4096",
    ]  # fmt: skip


_FACTORIES = {
    BARE: "bench.bare_app:create_app",
    BARE_ASGI: "bench.bare_asgi:create_app",
    SLOWAPI: "bench.slowapi_app:create_app",
}


def launches(
    wanted: list[str], *, workers: int, redis_url: str, gatekey_env: dict[str, str]
) -> Iterator[Launch]:
    """The servers to start, in `SERVERS` order (each alone on the machine)."""
    for name in SERVERS:
        if name not in wanted:
            continue
        port = free_port()
        if name == GATEKEY:
            command = serve_command(port, workers=workers)
            yield Launch(name, port, command, gatekey_env, "/readyz")
        else:
            env = {"BENCH_REDIS_URL": redis_url} if name == SLOWAPI else {}
            yield Launch(name, port, _uvicorn_command(_FACTORIES[name], port, workers), env, PATH)


def malformed_probe(key: str, folder: Path) -> Probe:
    """gatekey given `key` with a wrong checksum: refused before any cache, Redis or SQL."""
    bad = malformed(key)
    return Probe(MALFORMED, write_walk([bad], folder / "malformed.txt"), bad, 401, "MALFORMED")


def full_limits_probe(key: str, folder: Path) -> Probe:
    """gatekey given a key with two limits, an owner limit and credits, none ever reached."""
    return Probe(FULL_LIMITS, write_walk([key], folder / "full-limits.txt"), key, 200)


def probes(
    launch: Launch, scenario: Scenario, malformed: Probe | None, full: Probe | None = None
) -> list[Probe]:
    """The contender's point in a scenario; gatekey's malformed and full-limits points go beside
    the 1-key one, whose figures they are compared with."""
    found = [Probe(launch.name, scenario.walk, scenario.first_key, 200)]
    if launch.name == GATEKEY and scenario.is_single_key:
        found += [probe for probe in (malformed, full) if probe is not None]
    return found


def check_one(url: str, probe: Probe) -> None:
    """One request before the load: the status (and error code) every request must get."""
    answer = httpx.get(url, headers={"X-API-Key": probe.first_key}, timeout=5.0)
    is_problem = answer.headers.get("content-type", "").endswith("json")
    code = answer.json().get("code") if answer.status_code != 200 and is_problem else None
    if answer.status_code != probe.status or code != probe.code:
        expected = f"{probe.status} {probe.code or ''}".strip()
        got = f"{answer.status_code}: {answer.text[:300]}"
        raise BenchFailed(f"{LABELS[probe.name]}: expected {expected}, got {got}")


def failures(probe: Probe, result: WrkResult) -> list[str]:
    """Why the point does not count: a figure measured over errors, 401s or 429s is a lie."""
    found = []
    if result.requests == 0:
        found.append("no request completed")
    if result.socket_errors:
        found.append(f"{result.socket_errors:,} socket errors")
    if result.timeouts:
        found.append(f"{result.timeouts:,} timeouts")
    if probe.status == 200 and result.non_2xx:
        found.append(f"{result.non_2xx:,} of {result.requests:,} not 2xx")
    if probe.status != 200 and result.non_2xx != result.requests:
        found.append(f"{result.requests - result.non_2xx:,} of {result.requests:,} were 2xx")
    return found
