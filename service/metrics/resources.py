"""Worker resources: resident memory and CPU time from /proc, refreshed by a background task."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from service.metrics.registry import Metrics

logger = logging.getLogger("gatekey.metrics")


@dataclass(frozen=True, slots=True)
class ProcessResources:
    resident_bytes: int
    cpu_seconds: float


def parse_proc_stat_cpu_seconds(stat: str, clock_ticks: int) -> float:
    """User plus system CPU time from `/proc/<pid>/stat` (utime and stime, fields 14 and 15)."""
    # The command name (field 2) is in parentheses and may itself hold spaces or ")".
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / clock_ticks


def parse_proc_statm_resident_bytes(statm: str, page_size: int) -> int:
    """Resident set size from `/proc/<pid>/statm` (its second field, in pages)."""
    return int(statm.split()[1]) * page_size


def read_process_resources() -> ProcessResources:
    """This process's resources: two procfs reads, no psutil, no subprocess."""
    # procfs is answered from kernel memory and never waits on a disk, so this may run on the loop.
    return ProcessResources(
        resident_bytes=parse_proc_statm_resident_bytes(
            Path("/proc/self/statm").read_text(), os.sysconf("SC_PAGE_SIZE")
        ),
        cpu_seconds=parse_proc_stat_cpu_seconds(
            Path("/proc/self/stat").read_text(), os.sysconf("SC_CLK_TCK")
        ),
    )


def record_process_resources(metrics: Metrics) -> None:
    resources = read_process_resources()
    pid = str(os.getpid())
    metrics.worker_resident_memory.labels(pid).set(resources.resident_bytes)
    metrics.worker_cpu_seconds.labels(pid).set(resources.cpu_seconds)


async def run_resource_sampler(
    metrics: Metrics, stop: asyncio.Event | None = None, interval: float = 1.0
) -> None:
    """Record this worker's memory and CPU now and every `interval` s, until `stop` is set or the
    task is cancelled. Without /proc (not Linux) it logs once and ends."""
    stop = stop if stop is not None else asyncio.Event()
    while True:
        try:
            record_process_resources(metrics)
        except OSError as exc:
            logger.warning("resource_sampler_unavailable", extra={"error": str(exc)})
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval):
                await stop.wait()
        if stop.is_set():
            return
