"""One point: check one answer, warm up, then load while CPU and gatekey's counters are read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil
from rich.console import Console

from bench import contenders, cpu, observe, profile
from bench.contenders import BIN, PATH, Probe
from bench.cpu import ProcessFinder
from bench.report import FULL_LIMITS, GATEKEY, LABELS, MALFORMED, Measurement
from bench.scenarios import COLD, Scenario
from bench.wrk import KeyWalk, LoadSpec, next_offset, run_wrk
from service.harness.processes import ServerProcess


@dataclass(frozen=True, slots=True)
class Loads:
    """How every point is loaded, and the shared servers whose CPU each point reads."""

    spec: LoadSpec
    warmup_s: float
    duration_s: float
    shared_groups: Mapping[str, ProcessFinder]


def _repeated_keys(scenario: Scenario, probe: Probe, walk: KeyWalk, requests: int) -> int:
    """gatekey's cold point only (the one contender that caches keys): requests past the end of
    the key file, which sent a key a second time."""
    if scenario.kind != COLD or probe.name != GATEKEY:
        return 0
    return max(0, walk.offset + requests - scenario.size)


def _workers(server: ServerProcess) -> list[psutil.Process]:
    return [psutil.Process(pid) for pid in server.worker_pids()]


def point(
    console: Console, loads: Loads, server: ServerProcess, scenario: Scenario, probe: Probe
) -> Measurement:
    """The warm-up sends the first keys of the walk; the measured load starts after them, so a
    cold point never repeats a key the warm-up sent."""
    url, label = server.url + PATH, f"{scenario.name}: {LABELS[probe.name]}"
    contenders.check_one(url, probe)
    with console.status(f"[bold]{label}[/]: warming up {loads.warmup_s:g} s"):
        warm = run_wrk(url, probe.walk, loads.spec, loads.warmup_s)
    walk = KeyWalk(probe.walk.file, probe.walk.size, next_offset(probe.walk, warm, loads.spec))
    is_gatekey = probe.name in (GATEKEY, MALFORMED, FULL_LIMITS)
    before = observe.read(server.url) if is_gatekey else None
    groups = {cpu.APP: lambda: _workers(server), **loads.shared_groups}
    with (
        console.status(f"[bold]{label}[/]: measuring {loads.duration_s:g} s"),
        cpu.measured(groups) as used,
    ):
        result = run_wrk(url, walk, loads.spec, loads.duration_s)
    after = observe.read(server.url) if is_gatekey else None
    activity = None
    failures = contenders.failures(probe, result)
    if before is not None and after is not None:
        activity = observe.per_thousand(before, after, result.requests)
        if activity.fallbacks:
            failures.append("decided without Redis (RATE_LIMIT_ON_REDIS_ERROR fallback)")
    measurement = Measurement(
        scenario,
        probe.name,
        result,
        used[0],
        activity,
        tuple(failures),
        _repeated_keys(scenario, probe, walk, result.requests),
    )
    app_us = measurement.us(cpu.APP) or 0.0
    figures = f"p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, app {app_us:.0f} µs/req"
    verdict = f" [red]FAILED: {'; '.join(failures)}[/]" if failures else ""
    console.print(f"  {label}: {result.rps:,.0f} req/s, {figures}{verdict}")
    return measurement


def profiled(
    console: Console, loads: Loads, server: ServerProcess, walk: KeyWalk, out_dir: Path
) -> None:
    """One more load, sampled by py-spy in every worker."""
    seconds = max(1, round(loads.duration_s))
    pids = sorted(server.worker_pids())
    recordings = profile.start_recording(BIN / "py-spy", pids, seconds, out_dir)
    with console.status(f"[bold]gatekey[/]: py-spy on workers {pids} for {seconds} s"):
        run_wrk(server.url + PATH, walk, loads.spec, seconds + 1)
        paths = profile.finish_recording(recordings, timeout_s=30)
    profile.render(console, paths)
