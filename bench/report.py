"""The run's figures: a rich table, gatekey's ratios against the issue's targets, and JSON."""

from __future__ import annotations

import json
import operator
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.cpu import CpuUse
from bench.observe import Activity
from bench.wrk import WrkResult

BARE, SLOWAPI, GATEKEY, MALFORMED = "bare", "slowapi", "gatekey", "gatekey-malformed"
LABELS = {
    BARE: "bare FastAPI",
    SLOWAPI: "slowapi + Redis",
    GATEKEY: "gatekey valid key",
    MALFORMED: "gatekey malformed",
}
# Above this share of the machine used by other processes, the run is flagged as noisy.
NOISY_OTHER_SHARE = 0.15
# A warm cache reaches PostgreSQL a few times a second per worker, not once per 100 requests.
COLD_CACHE_MISSES_PER_1K = 10.0


@dataclass(frozen=True, slots=True)
class Measurement:
    load: WrkResult
    cpu: CpuUse
    activity: Activity | None = None  # gatekey's only

    @property
    def server_us(self) -> float:
        return self.cpu.per_request_us(self.load.requests)[0]

    @property
    def redis_us(self) -> float:
        return self.cpu.per_request_us(self.load.requests)[1]

    @property
    def total_us(self) -> float:
        """Server + Redis + wrk CPU per request: what bounds requests/s on a saturated machine."""
        return sum(self.cpu.per_request_us(self.load.requests))


@dataclass(frozen=True, slots=True)
class Ratio:
    name: str
    value: float
    comparison: str  # ">=" or "<="
    target: float
    by_cpu: float | None  # the same ratio from CPU per request: what a quiet machine would show

    @property
    def is_met(self) -> bool:
        compare = operator.ge if self.comparison == ">=" else operator.le
        return bool(compare(self.value, self.target))


# (name, numerator, denominator, comparison, target, is a req/s ratio): the targets.
_RATIOS: list[tuple[str, str, str, str, float, bool]] = [
    ("gatekey / bare req/s", GATEKEY, BARE, ">=", 0.55, True),
    ("gatekey / slowapi req/s", GATEKEY, SLOWAPI, ">=", 2.0, True),
    ("gatekey p99 / bare p99", GATEKEY, BARE, "<=", 2.0, False),
    ("malformed / bare req/s", MALFORMED, BARE, ">=", 0.90, True),
]


def ratios(results: Mapping[str, Measurement]) -> list[Ratio]:
    """Every target whose two contenders were both measured in this run."""
    found = []
    for name, top, bottom, comparison, target, is_throughput in _RATIOS:
        if top not in results or bottom not in results:
            continue
        upper, lower = results[top], results[bottom]
        if is_throughput:
            value = upper.load.rps / max(lower.load.rps, 1e-9)
            by_cpu: float | None = lower.total_us / max(upper.total_us, 1e-9)
        else:
            value, by_cpu = upper.load.p99_ms / max(lower.load.p99_ms, 1e-9), None
        found.append(Ratio(name, value, comparison, target, by_cpu))
    return found


def _activity_cells(activity: Activity | None) -> tuple[str, str]:
    if activity is None:
        return "", ""
    misses, fallbacks = f"{activity.cache_misses:.1f}", f"{activity.fallbacks:.1f}"
    if activity.cache_misses > COLD_CACHE_MISSES_PER_1K:
        misses = f"[red]{misses}[/]"
    if activity.fallbacks:
        fallbacks = f"[red]{fallbacks}[/]"
    return misses, fallbacks


def _contender_table(results: Mapping[str, Measurement], caption: str) -> Table:
    table = Table(title="gatekey benchmark", caption=caption)
    table.add_column("contender")
    columns = ("req/s", "p50 ms", "p99 ms", "requests", "non-2xx", "CPU µs/req", "Redis µs/req")
    for column in (*columns, "other CPU", "cache miss/1k", "fallback/1k"):
        table.add_column(column, justify="right")
    for name, measurement in results.items():
        load, other = measurement.load, measurement.cpu.other_share
        other_text = f"{other:.0%}" if other < NOISY_OTHER_SHARE else f"[yellow]{other:.0%}[/]"
        table.add_row(
            LABELS[name],
            f"{load.rps:,.0f}",
            f"{load.p50_ms:.2f}",
            f"{load.p99_ms:.2f}",
            f"{load.requests:,}",
            f"{load.non_2xx:,}" + (f" +{load.socket_errors} socket" if load.socket_errors else ""),
            f"{measurement.server_us:.0f}",
            f"{measurement.redis_us:.0f}",
            other_text,
            *_activity_cells(measurement.activity),
        )
    return table


def _ratio_table(found: list[Ratio]) -> Table:
    table = Table(title="gatekey against the targets")
    table.add_column("ratio")
    for column in ("value", "target", "result", "by CPU/request"):
        table.add_column(column, justify="right")
    for ratio in found:
        verdict = "[green]PASS[/green]" if ratio.is_met else "[red]MISS[/red]"
        target = f"{ratio.comparison} {ratio.target:.2f}"
        by_cpu = "" if ratio.by_cpu is None else f"{ratio.by_cpu:.2f}"
        table.add_row(ratio.name, f"{ratio.value:.2f}", target, verdict, by_cpu)
    return table


def render(console: Console, results: Mapping[str, Measurement], caption: str) -> None:
    console.print(_contender_table(results, caption))
    found = ratios(results)
    if found:
        console.print(_ratio_table(found))
    if any(m.cpu.other_share >= NOISY_OTHER_SHARE for m in results.values()):
        console.print(
            "[yellow]other processes took a large share of the CPU during some runs: req/s "
            "ratios are unreliable; 'by CPU/request' (server + Redis + wrk) is what a quiet "
            "machine would show[/]"
        )


def write_json(path: Path, results: Mapping[str, Measurement], run: Mapping[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    contenders = []
    for name, measurement in results.items():
        server_us, redis_us, wrk_us = measurement.cpu.per_request_us(measurement.load.requests)
        activity = measurement.activity
        contenders.append(
            {
                "name": name,
                "label": LABELS[name],
                "rps": round(measurement.load.rps, 1),
                **asdict(measurement.load),
                "cpu_us_per_request": {
                    "server": round(server_us, 1),
                    "redis": round(redis_us, 1),
                    "wrk": round(wrk_us, 1),
                },
                "other_cpu_share": round(measurement.cpu.other_share, 3),
                "per_1000_requests": asdict(activity) if activity is not None else None,
            }
        )
    found = [{**asdict(r), "result": "PASS" if r.is_met else "MISS"} for r in ratios(results)]
    document = {"run": dict(run), "contenders": contenders, "ratios": found}
    path.write_text(json.dumps(document, indent=2) + "\n")
