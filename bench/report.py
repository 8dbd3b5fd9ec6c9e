"""The run's figures: one row per point (scenario × contender) in a rich table, and JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from bench.cpu import APP, POSTGRES, REDIS, CpuUse
from bench.observe import Activity
from bench.wrk import WrkResult

if TYPE_CHECKING:
    from bench.accuracy import Accuracy
    from bench.scenarios import Scenario
    from bench.targets import Check

BARE, BARE_ASGI, SLOWAPI, GATEKEY = "bare", "bare-asgi", "slowapi", "gatekey"
MALFORMED = "gatekey-malformed"
# The same key path with everything a business key carries, beside the one-limit figure.
FULL_LIMITS = "gatekey-full-limits"
LABELS = {
    BARE: "bare FastAPI",
    BARE_ASGI: "bare ASGI",
    SLOWAPI: "slowapi + Redis",
    GATEKEY: "gatekey",
    MALFORMED: "gatekey malformed",
    FULL_LIMITS: "gatekey, 2 limits + owner limit + credits",
}
# The most the full-limits key may cost in req/s against the one-limit key (the target).
FULL_LIMITS_TARGET = 0.85
# Above this share of the machine used by other processes, the run is flagged as noisy.
NOISY_OTHER_SHARE = 0.15


@dataclass(frozen=True, slots=True)
class Measurement:
    """One point: a contender under one scenario's keys."""

    scenario: Scenario
    contender: str
    load: WrkResult
    cpu: CpuUse
    activity: Activity | None = None  # gatekey's only
    failures: tuple[str, ...] = field(default=())  # why the point does not count
    repeated_keys: int = 0  # cold: requests that sent a key already sent in this run

    @property
    def label(self) -> str:
        return f"{self.scenario.name}: {LABELS[self.contender]}"

    def us(self, group: str) -> float | None:
        return self.cpu.per_request_us(group, self.load.requests)


def reference(results: Sequence[Measurement], point: Measurement, name: str) -> Measurement | None:
    """The `name` contender's point in the same scenario."""
    same = (m for m in results if m.scenario == point.scenario and m.contender == name)
    return next(same, None)


def rps_ratio(results: Sequence[Measurement], point: Measurement, name: str) -> float | None:
    bare = reference(results, point, name)
    return None if bare is None or not bare.load.rps else round(point.load.rps / bare.load.rps, 3)


def _ratio_cell(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _us_cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def _result_cell(point: Measurement, checks: Sequence[Check]) -> str:
    if point.failures:
        return "[bold red]FAILED[/]"
    mine = [check for check in checks if check.point is point]
    if not mine:
        return ""
    return "[green]PASS[/]" if all(check.passed for check in mine) else "[red]FAIL[/]"


def _point_table(results: Sequence[Measurement], checks: Sequence[Check], caption: str) -> Table:
    table = Table(title="gatekey benchmark", caption=caption)
    table.add_column("scenario")
    table.add_column("contender")
    columns = ("req/s", "×FastAPI", "×ASGI", "p50 ms", "p99 ms", "sock+t/o", "app µs")
    for column in (*columns, "Redis µs", "PG µs", "other", "miss/1k", "result"):
        table.add_column(column, justify="right")
    for index, point in enumerate(results):
        load, other = point.load, point.cpu.other_share
        is_last = index + 1 == len(results) or results[index + 1].scenario != point.scenario
        table.add_row(
            point.scenario.name,
            LABELS[point.contender],
            f"{load.rps:,.0f}",
            _ratio_cell(rps_ratio(results, point, BARE)),
            _ratio_cell(rps_ratio(results, point, BARE_ASGI)),
            f"{load.p50_ms:.2f}",
            f"{load.p99_ms:.2f}",
            f"{load.socket_errors + load.timeouts:,}",
            _us_cell(point.us(APP)),
            _us_cell(point.us(REDIS)),
            _us_cell(point.us(POSTGRES)),
            f"{other:.0%}" if other < NOISY_OTHER_SHARE else f"[yellow]{other:.0%}[/]",
            "" if point.activity is None else f"{point.activity.cache_misses:.1f}",
            _result_cell(point, checks),
            end_section=is_last,
        )
    return table


def _check_table(checks: Sequence[Check]) -> Table:
    table = Table(title="gatekey against the goals (ratios to bare FastAPI, as issue 12 sets them)")
    table.add_column("point")
    table.add_column("goal")
    for column in ("value", "target", "result", "vs bare ASGI", "by CPU/request"):
        table.add_column(column, justify="right")
    for check in checks:
        verdict = "[green]PASS[/]" if check.passed else "[red]FAIL[/]"
        table.add_row(
            check.point_label,
            check.goal,
            f"{check.value:,.0f}" if check.comparison == "==" else f"{check.value:.2f}",
            f"{check.comparison} {check.target:g}",
            verdict,
            _ratio_cell(check.asgi_value),
            _ratio_cell(check.by_cpu),
        )
    return table


def render(
    console: Console, results: Sequence[Measurement], checks: Sequence[Check], caption: str
) -> None:
    console.print(_point_table(results, checks, caption))
    for point in results:
        if point.failures:
            console.print(f"[red]FAILED[/] {point.label}: {'; '.join(point.failures)}")
        if point.repeated_keys:
            console.print(
                f"[yellow]{point.label}: {point.repeated_keys:,} requests sent a key already "
                "sent in this run (the key file ran out): raise --cold for a fully cold point[/]"
            )
    if not any(point.contender == BARE for point in results):
        console.print("[yellow]no req/s or p99 goal judged: bare FastAPI was not measured[/]")
    _full_limits_line(console, results)
    if checks:
        console.print(_check_table(checks))
    if any(m.cpu.other_share >= NOISY_OTHER_SHARE for m in results):
        console.print(
            "[yellow]other processes took a large share of the CPU during some points: req/s "
            "ratios are unreliable; 'by CPU/request' (app + Redis + PostgreSQL + wrk) is what a "
            "quiet machine would show[/]"
        )


def full_limits_ratio(results: Sequence[Measurement]) -> float | None:
    """The full-limits key's req/s over the one-limit key's, measured in the same run."""
    full = next((m for m in results if m.contender == FULL_LIMITS), None)
    return None if full is None else rps_ratio(results, full, GATEKEY)


def _full_limits_line(console: Console, results: Sequence[Measurement]) -> None:
    ratio = full_limits_ratio(results)
    if ratio is None:
        return
    verdict = "[green]within[/]" if ratio >= FULL_LIMITS_TARGET else "[red]beyond[/]"
    console.print(
        f"{LABELS[FULL_LIMITS]}: {ratio:.2f}x the one-limit gatekey's req/s "
        f"({verdict} the 15 % target)"
    )


def _point_json(results: Sequence[Measurement], point: Measurement) -> dict[str, object]:
    groups = {g: point.us(g) for g in (APP, REDIS, POSTGRES)}
    return {
        "scenario": point.scenario.name,
        "kind": point.scenario.kind,
        "keys": point.scenario.size,
        "contender": point.contender,
        "label": LABELS[point.contender],
        "rps": round(point.load.rps, 1),
        "ratio_to_bare_fastapi": rps_ratio(results, point, BARE),
        "ratio_to_bare_asgi": rps_ratio(results, point, BARE_ASGI),
        **asdict(point.load),
        "cpu_us_per_request": {
            **{g: None if us is None else round(us, 1) for g, us in groups.items()},
            "wrk": round(point.cpu.wrk_s * 1e6 / max(point.load.requests, 1), 1),
        },
        "other_cpu_share": round(point.cpu.other_share, 3),
        "per_1000_requests": asdict(point.activity) if point.activity is not None else None,
        "repeated_keys": point.repeated_keys,
        "failures": list(point.failures),
    }


def write_json(
    path: Path,
    results: Sequence[Measurement],
    checks: Sequence[Check],
    accuracy: Accuracy | None,
    run: Mapping[str, object],
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "run": dict(run),
        "points": [_point_json(results, point) for point in results],
        "checks": [check.as_json() for check in checks],
        "full_limits_ratio_to_one_limit": full_limits_ratio(results),
        "accuracy": None if accuracy is None else {**asdict(accuracy), "exact": accuracy.is_exact},
        "passed": all(check.passed for check in checks) and not any(m.failures for m in results),
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
