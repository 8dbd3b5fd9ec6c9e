"""Worker resources read from /proc: parsing, and one round of the sampler."""

from __future__ import annotations

import asyncio
import os

from prometheus_client import CollectorRegistry

from service.metrics import Metrics, run_resource_sampler
from service.metrics.resources import (
    parse_proc_stat_cpu_seconds,
    parse_proc_statm_resident_bytes,
)

# A command name holding spaces and parentheses, as `/proc/<pid>/stat` prints it.
STAT = "4242 (gk (worker) 1) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 125 0 0 20 0 3 0 77 0 0"


def test_cpu_seconds_are_user_plus_system_ticks() -> None:
    assert parse_proc_stat_cpu_seconds(STAT, clock_ticks=100) == 3.75


def test_resident_bytes_are_resident_pages_times_page_size() -> None:
    assert parse_proc_statm_resident_bytes("51200 2560 700 300 0 4000 0\n", 4096) == 10_485_760


async def test_sampler_records_this_worker_then_stops() -> None:
    registry = CollectorRegistry()
    stop = asyncio.Event()
    stop.set()

    await run_resource_sampler(Metrics(registry), stop)

    pid = {"pid": str(os.getpid())}
    resident = registry.get_sample_value("gatekey_worker_resident_memory_bytes", pid)
    cpu = registry.get_sample_value("gatekey_worker_cpu_seconds", pid)
    assert resident is not None
    assert resident > 10 * 2**20
    assert cpu is not None
    assert cpu > 0
