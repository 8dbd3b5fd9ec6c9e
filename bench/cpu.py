"""Where the CPU went during a measurement: the server's workers, Redis, wrk, everything else.

On a 2-core machine, requests/s moves with whatever else runs; CPU time per request does not
(much), and the share taken by other processes says how far to trust the run.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import psutil


@dataclass(frozen=True, slots=True)
class CpuUse:
    server_s: float  # the contender's worker processes
    redis_s: float  # the local redis-server (shared: other clients' commands count too)
    wrk_s: float
    other_s: float  # every other process, PostgreSQL included, and other users' load
    elapsed_s: float

    def per_request_us(self, requests: int) -> tuple[float, float, float]:
        """(server, Redis, wrk) CPU µs per request."""
        scale = 1e6 / max(requests, 1)
        return self.server_s * scale, self.redis_s * scale, self.wrk_s * scale

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


def _processes_s(processes: Sequence[psutil.Process]) -> float:
    return sum(sum(process.cpu_times()[:2]) for process in processes)


@contextmanager
def measured(pids: Sequence[int], redis_pid: int | None) -> Iterator[list[CpuUse]]:
    """Yield a list that holds one `CpuUse` for the block once it ends."""
    workers = [psutil.Process(pid) for pid in pids]
    redis = [psutil.Process(redis_pid)] if redis_pid is not None else []
    found: list[CpuUse] = []
    start = (time.monotonic(), _busy_s(), _children_s(), _processes_s(workers), _processes_s(redis))
    yield found
    elapsed = time.monotonic() - start[0]
    busy = _busy_s() - start[1]
    wrk = _children_s() - start[2]
    server = _processes_s(workers) - start[3]
    redis_s = _processes_s(redis) - start[4]
    other = max(0.0, busy - wrk - server - redis_s)
    found.append(CpuUse(server, redis_s, wrk, other, elapsed))


def local_redis_pid(host: str, reported_pid: int) -> int | None:
    """The pid Redis reports, when Redis runs on this machine (else its CPU is not ours to see)."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        return None
    try:
        name = psutil.Process(reported_pid).name()
    except psutil.NoSuchProcess:
        return None
    return reported_pid if "redis" in name else None
