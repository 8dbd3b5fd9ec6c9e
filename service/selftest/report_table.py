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
    table.add_column("figures", ratio=3, overflow="fold")
    if with_notes:
        table.add_column("criterion and fix", ratio=2)
    for check in checks:
        cells: list[str | Text] = [
            check.phase.value,
            Text(check.name),
            Text(check.result.value, style=RESULT_STYLE[check.result]),
            Text(figures_text(check.figures)),  # figures may quote a server's answer
        ]
        if with_notes:
            note = Text(check.criterion if check.fix else "")
            if check.fix:
                note.append(f"\nfix: {check.fix}", style=RESULT_STYLE[check.result])
            cells.append(note)
        table.add_row(*cells)
    return table


def load_table(steps: list[LoadStep]) -> Table:
    table = Table(title="load (latency in ms; CPU % summed over workers; peak RSS of one worker)")
    for column in (
        "users",
        "requests",
        "req/s",
        "p50",
        "p95",
        "p99",
        "errors %",
        "CPU %",
        "RSS MB",
        "DB conns",
    ):
        table.add_column(column, justify="right")
    for s in steps:
        table.add_row(
            str(s.users),
            str(s.requests),
            f"{s.rps:.0f}",
            f"{s.p50_ms:g}",
            f"{s.p95_ms:g}",
            f"{s.p99_ms:g}",
            f"{100 * s.error_rate:.2f}",
            f"{s.worker_cpu_percent:g}",
            f"{s.worker_rss_mb:g}",
            str(s.db_connections),
        )
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
