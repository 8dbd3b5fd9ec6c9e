"""The `--html` report: one self-contained page with the check table and inline SVG charts."""

from __future__ import annotations

from html import escape
from pathlib import Path

from service.selftest.model import MemorySample, Report, SoakSample, Verdict
from service.selftest.report_table import LOAD_COLUMNS, LOAD_TITLE, figures_text, load_cells
from service.selftest.svg import Series, line_chart

_STYLE = """
body{font-family:sans-serif;margin:24px;color:#222}
.verdict{font-size:28px;font-weight:bold}.GO{color:#1a7f37}.NO-GO{color:#c62828}
.layout{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}.layout>table{flex:1 1 640px}
.charts{display:flex;flex-direction:column;gap:16px;position:sticky;top:24px}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:4px 6px;
vertical-align:top;text-align:left}.pass{color:#1a7f37}.warn{color:#b26a00}
.fail{color:#c62828;font-weight:bold}
"""


def latency_chart(report: Report) -> str:
    steps = sorted(report.load, key=lambda step: step.users)
    series = [
        Series(name, [(step.users, getattr(step, f"{name}_ms")) for step in steps])
        for name in ("p50", "p95", "p99")
    ]
    return line_chart("Latency versus users", "concurrent users", "ms", series)


def memory_chart(samples: list[MemorySample]) -> str:
    by_pid: dict[str, list[tuple[float, float]]] = {}
    for sample in samples:
        by_pid.setdefault(sample.pid, []).append((sample.t_s, sample.rss_mb))
    series = [Series(f"pid {pid}", points) for pid, points in sorted(by_pid.items())]
    return line_chart("Resident memory per worker", "seconds into the run", "MB", series)


_SOAK_CHARTS = (
    ("Soak: resident memory per worker", "MB", ("rss_mb",)),
    ("Soak: open file descriptors per worker", "fds", ("open_fds",)),
    ("Soak: PostgreSQL connections and Redis clients", "connections",
     ("pg_connections", "redis_clients")),
)  # fmt: skip


def soak_charts(samples: list[SoakSample]) -> str:
    """One chart per kind of series the soak sampled, a line per worker or per deployment."""
    charts = []
    for title, unit, kinds in _SOAK_CHARTS:
        lines: dict[str, list[tuple[float, float]]] = {}
        for sample in samples:
            if sample.series in kinds:
                name = sample.series if len(kinds) > 1 else f"pid {sample.source}"
                lines.setdefault(name, []).append((sample.t_s, sample.value))
        if lines:
            series = [Series(name, points) for name, points in sorted(lines.items())]
            charts.append(line_chart(title, "seconds into the run", unit, series))
    return "".join(charts)


def _check_rows(report: Report) -> str:
    rows = []
    for check in report.checks:
        fix = f"<br><b>fix:</b> {escape(check.fix)}" if check.fix else ""
        rows.append(
            f"<tr><td>{check.phase.value}</td><td>{escape(check.name)}</td>"
            f'<td class="{check.result.value}">{check.result.value}</td>'
            f"<td>{escape(figures_text(check.figures))}</td>"
            f"<td>{escape(check.criterion)}{fix}</td></tr>"
        )
    return "\n".join(rows)


def _load_table(report: Report) -> str:
    if not report.load:
        return ""
    head = "".join(f"<th>{escape(column)}</th>" for column in LOAD_COLUMNS)
    rows = "".join(
        "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in load_cells(step)) + "</tr>"
        for step in report.load
    )
    return f"<h3>{escape(LOAD_TITLE)}</h3><table><tr>{head}</tr>{rows}</table>"


def render_html(report: Report) -> str:
    verdict_class = "GO" if report.verdict is Verdict.GO else "NO-GO"
    charts = (
        (latency_chart(report) if report.load else "")
        + (memory_chart(report.memory) if report.memory else "")
        + soak_charts(report.soak)
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>gatekey selftest: {report.verdict.value}</title>
<style>{_STYLE}</style></head><body>
<div class="verdict {verdict_class}">{report.verdict.value}</div>
<p>{escape(report.target)}, started {report.started_at.isoformat()}, {report.duration_s:.0f} s</p>
<div class="layout"><table><tr><th>phase</th><th>check</th><th>result</th><th>figures</th>
<th>criterion / fix</th></tr>
{_check_rows(report)}
</table><div class="charts">{charts}</div></div>
{_load_table(report)}
</body></html>
"""


def write_html(report: Report, path: Path) -> None:
    path.write_text(render_html(report))
