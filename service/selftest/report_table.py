"""The terminal report: the check table, the load table and the verdict line (rich)."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from service.selftest.model import CheckResult, Figure, LoadStep, Outcome, Report, Verdict

RESULT_STYLE = {Outcome.PASS: "green", Outcome.WARN: "yellow", Outcome.FAIL: "bold red"}


def figures_text(figures: dict[str, Figure]) -> str:
    """`name=value, ...`; metric values arrive as floats, so 20.0 prints as 20."""
    return ", ".join(
        f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}"
        for name, value in figures.items()
    )


def check_table(checks: list[CheckResult], *, title: str = "checks") -> Table:
    """One row per check; the criterion and fix only for checks that did not pass (all of it is
    in the JSON and HTML reports), so a GO table stays narrow."""
    with_notes = any(check.fix for check in checks)
    table = Table(title=title, expand=with_notes)
    table.add_column("phase", no_wrap=True)
    table.add_column("check")
    table.add_column("result", no_wrap=True)
    table.add_column("s", justify="right", no_wrap=True)
    table.add_column("figures", ratio=3, overflow="fold")
    if with_notes:
        table.add_column("criterion and fix", ratio=2)
    for check in checks:
        cells: list[str | Text] = [
            check.phase.value,
            Text(check.name),
            Text(check.result.value, style=RESULT_STYLE[check.result]),
            "" if check.duration_s is None else f"{check.duration_s:.1f}",
            Text(figures_text(check.figures)),  # figures may quote a server's answer
        ]
        if with_notes:
            note = Text(check.criterion if check.fix else "")
            if check.fix:
                note.append(f"\nfix: {check.fix}", style=RESULT_STYLE[check.result])
            cells.append(note)
        table.add_row(*cells)
    return table


LOAD_COLUMNS = (
    "users",
    "requests",
    "req/s",
    "req/s floor",
    "p50",
    "p95",
    "p99",
    "p99 ceiling",
    "errors %",
    "CPU %",
    "RSS MB",
    "DB conns",
)
LOAD_TITLE = "load (latency in ms; CPU % summed over workers; peak RSS of one worker)"


def load_cells(step: LoadStep) -> list[str]:
    """One step's row: its figures beside the floor and ceiling it was judged against."""
    return [
        str(step.users),
        str(step.requests),
        f"{step.rps:.0f}",
        f"{step.rps_floor:g}",
        f"{step.p50_ms:g}",
        f"{step.p95_ms:g}",
        f"{step.p99_ms:g}",
        f"{step.p99_ceiling_ms:g}",
        f"{100 * step.error_rate:.2f}",
        f"{step.worker_cpu_percent:g}",
        f"{step.worker_rss_mb:g}",
        str(step.db_connections),
    ]


def load_table(steps: list[LoadStep]) -> Table:
    table = Table(title=LOAD_TITLE)
    for column in LOAD_COLUMNS:
        table.add_column(column, justify="right")
    for step in steps:
        table.add_row(*load_cells(step))
    return table


def verdict_line(report: Report) -> Text:
    failed = [c.name for c in report.checks if c.result is Outcome.FAIL]
    style = "bold green" if report.verdict is Verdict.GO else "bold red"
    line = Text(f"{report.verdict.value}", style=style)
    line.append(
        f"  {len(report.checks)} checks in {report.duration_s:.0f} s against {report.target}"
    )
    if failed:
        line.append(f"; failed: {', '.join(failed)}", style="red")
    return line


def render(report: Report) -> Group:
    parts: list[Table | Text] = [check_table(report.checks)]
    if report.load:
        parts.append(load_table(report.load))
    parts.append(verdict_line(report))
    return Group(*parts)
