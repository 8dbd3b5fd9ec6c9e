"""Where the CPU went during a measurement: the app's workers, Redis, PostgreSQL, wrk, the rest.

On a 2-core machine, requests/s moves with whatever else runs; CPU time per request does not
(much), and the share taken by other processes says how far to trust the run.
"""

from __future__ import annotations

import asyncio
import os
import re
import resource
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import asyncpg
import psutil

# A group's processes, listed anew at the start and the end of a window (backends come and go).
ProcessFinder = Callable[[], Sequence[psutil.Process]]
APP, REDIS, POSTGRES = "app", "redis", "postgres"
_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True, slots=True)
class CpuUse:
    groups_s: dict[str, float]  # per process group; a group not visible from here is absent
    wrk_s: float
    other_s: float  # every other process: other users' load, and any server not measured
    elapsed_s: float

    def per_request_us(self, group: str, requests: int) -> float | None:
        seconds = self.groups_s.get(group)
        return None if seconds is None else seconds * 1e6 / max(requests, 1)

    def total_us(self, requests: int) -> float:
        """Every measured group plus wrk, per request: what bounds req/s on a saturated machine."""
        return (sum(self.groups_s.values()) + self.wrk_s) * 1e6 / max(requests, 1)

    @property
    def other_share(self) -> float:
        """Other processes' CPU as a fraction of the whole machine over the window."""
        capacity = self.elapsed_s * (os.cpu_count() or 1)
        return self.other_s / capacity if capacity else 0.0


def _busy_s() -> float:
    # Linux: `guest` is already inside `user`, `steal` is the hypervisor's, not this machine's.
    times = psutil.cpu_times()
    return float(times.user + times.nice + times.system + times.irq + times.softirq)


def _children_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cpu_by_pid(processes: Sequence[psutil.Process]) -> dict[int, float]:
    found = {}
    for process in processes:
        try:
            found[process.pid] = sum(process.cpu_times()[:2])
        except psutil.NoSuchProcess:
            continue
    return found


def _grown(before: Mapping[int, float], after: Mapping[int, float]) -> float:
    """CPU since the start; a process born during the window counts whole, one gone is lost."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


@contextmanager
def measured(groups: Mapping[str, ProcessFinder]) -> Iterator[list[CpuUse]]:
    """Yield a list that holds one `CpuUse` for the block once it ends."""
    found: list[CpuUse] = []
    started = {name: _cpu_by_pid(finder()) for name, finder in groups.items()}
    start = (time.monotonic(), _busy_s(), _children_s())
    yield found
    end = (time.monotonic(), _busy_s(), _children_s())
    elapsed, busy, wrk = (now - then for now, then in zip(end, start, strict=True))
    groups_s = {
        name: _grown(started[name], _cpu_by_pid(finder())) for name, finder in groups.items()
    }
    other = max(0.0, busy - wrk - sum(groups_s.values()))
    found.append(CpuUse(groups_s, wrk, other, elapsed))


def _local_process(host: str, pid: int, name_part: str) -> psutil.Process | None:
    """The process when the server runs on this machine (else its CPU is not ours to see)."""
    if host not in _LOCAL_HOSTS:
        return None
    try:
        process = psutil.Process(pid)
        return process if name_part in process.name() else None
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def redis_finder(host: str, reported_pid: int) -> ProcessFinder | None:
    """The redis-server Redis reports itself to be (shared: other clients' commands count too)."""
    process = _local_process(host, reported_pid, "redis")
    return None if process is None else lambda: [process]


# Processes serving every database: their work for this run is theirs too (WAL, checkpoints).
_POSTGRES_BACKGROUND = (
    "checkpointer", "background writer", "walwriter", "autovacuum launcher",
    "logical replication launcher",
)  # fmt: skip


# A client backend's title: `postgres: [cluster: ]user database host(port) activity`.
_BACKEND_TITLE = re.compile(r"\s(?P<database>\S+)\s+(?:\S+\(\d+\)|\[local\])(?:\s|$)")


async def _backend_pid(dsn: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        return int(await connection.fetchval("SELECT pg_backend_pid()"))
    finally:
        await connection.close()


def _title(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline()).strip()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return ""


def _serves(title: str, database: str) -> bool:
    """A backend connected to `database`, or a background process serving every database."""
    backend = _BACKEND_TITLE.search(title)
    if backend is None:
        return title.endswith(_POSTGRES_BACKGROUND)
    return backend["database"] == database


def postgres_finder(host: str, dsn: str, database: str) -> ProcessFinder | None:
    """The postmaster, its backends on `database` and its background processes, told apart by
    the process titles PostgreSQL sets (`... postgres gatekey_bench 127.0.0.1(5678) idle`).
    One connection finds the postmaster; the looks during the run open none, so they neither
    add load nor fail when other clients have taken every connection."""
    backend = _local_process(host, asyncio.run(_backend_pid(dsn)), "postgres")
    postmaster = backend.parent() if backend is not None else None
    if postmaster is None:
        return None

    def find() -> list[psutil.Process]:
        found = [postmaster]
        for child in postmaster.children():
            if _serves(_title(child), database):
                found.append(child)
        return found

    return find
