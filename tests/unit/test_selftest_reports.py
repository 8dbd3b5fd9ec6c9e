"""Self-test reports: the stable JSON keys, baselines, the HTML page, the terminal table."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console

from service.selftest.model import (
    CheckResult,
    LoadStep,
    MemorySample,
    Outcome,
    Phase,
    Report,
    SelftestAborted,
    Verdict,
)
from service.selftest.report_html import render_html
from service.selftest.report_json import read_baseline, report_dict, write_json
from service.selftest.report_table import check_table, render
from service.selftest.svg import Series, line_chart, nice_ceiling

STEPS = [
    LoadStep(10, 6000, 600.0, 4.0, 9.0, 15.0, 0.0, worker_cpu_percent=120.0),
    LoadStep(
        50, 7000, 700.0, 40.0, 90.0, 150.0, 0.0005, failures=4, p99_ceiling_ms=1000, rps_floor=100
    ),
]
REPORT = Report(
    verdict=Verdict.NO_GO,
    started_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
    duration_s=42.25,
    target="http://127.0.0.1:8123",
    checks=[
        CheckResult(
            Phase.PAIRS,
            "exact-limit",
            Outcome.FAIL,
            {"admitted": 80},
            "exactly 40",
            "set RATE_LIMIT_BACKEND=redis",
        ),
        CheckResult(Phase.LOAD, "load-10-users", Outcome.PASS, {"rps": 600.0}, "< 0.1 %"),
    ],
    load=STEPS,
    memory=[
        MemorySample(0.5, "11", 80.0),
        MemorySample(1.0, "11", 81.0),
        MemorySample(0.5, "12", 70.0),
        MemorySample(1.0, "12", 70.5),
    ],
)


def test_json_report_has_the_stable_keys() -> None:
    data = report_dict(REPORT)
    assert list(data) == ["verdict", "started_at", "duration_s", "target", "checks", "load", "soak"]
    assert (data["verdict"], data["started_at"], data["duration_s"]) == (
        "NO-GO",
        "2025-01-02T03:04:05+00:00",
        42.2,
    )
    assert data["checks"][0] == {
        "phase": "pairs",
        "name": "exact-limit",
        "result": "fail",
        "figures": {"admitted": 80},
        "criterion": "exactly 40",
        "fix": "set RATE_LIMIT_BACKEND=redis",
        "duration_s": None,
    }
    assert data["checks"][1]["fix"] is None
    first = data["load"][0]
    assert {
        k: first[k]
        for k in ("users", "requests", "rps", "p50_ms", "p95_ms", "p99_ms", "error_rate")
    } == {
        "users": 10,
        "requests": 6000,
        "rps": 600.0,
        "p50_ms": 4.0,
        "p95_ms": 9.0,
        "p99_ms": 15.0,
        "error_rate": 0.0,
    }


def test_a_written_report_reads_back_as_a_baseline(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    write_json(REPORT, path)
    assert json.loads(path.read_text())["target"] == "http://127.0.0.1:8123"
    baseline = read_baseline(path)
    assert [(s.users, s.rps, s.p95_ms) for s in baseline] == [(10, 600.0, 9.0), (50, 700.0, 90.0)]


@pytest.mark.parametrize("content", ["not json", '{"load": []}', '{"load": [{"users": 1}]}'])
def test_a_file_that_is_no_report_stops_the_run(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(SelftestAborted, match=r"bad\.json"):
        read_baseline(path)


def test_html_is_one_self_contained_page_with_both_charts() -> None:
    page = render_html(REPORT)
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<svg") == 2
    for shown in ("Latency versus users", "Resident memory per worker", "pid 11", "pid 12"):
        assert shown in page
    # Nothing fetched from elsewhere: no script, no link, no external URL of any kind.
    for banned in ("<script", "<link", "@import", "url(", "src=", "href="):
        assert banned not in page
    assert not re.search(r"https?://(?!127\.0\.0\.1:8123)", page)
    assert "fix:</b> set RATE_LIMIT_BACKEND=redis" in page
    # The load table states each step's p99 ceiling and req/s floor beside its figures.
    assert "<th>p99 ceiling</th>" in page
    assert "<td>150</td><td>1000</td>" in page


def test_html_escapes_what_it_shows() -> None:
    hostile = Report(
        Verdict.GO,
        REPORT.started_at,
        1.0,
        "<x>",
        [
            CheckResult(Phase.PARTS, "<b>", Outcome.PASS, {"a": "<i>"}, "c & d"),
        ],
    )
    page = render_html(hostile)
    assert "<x>" not in page
    assert "<b>" not in page
    assert "&lt;i&gt;" in page
    assert "c &amp; d" in page


def test_chart_scales_to_a_round_top_and_draws_each_series() -> None:
    assert [nice_ceiling(v) for v in (0, 0.7, 3, 150, 151, 2400)] == [1, 1, 5, 200, 200, 2500]
    svg = line_chart("t", "x", "y", [Series("a", [(10, 4), (50, 40)]), Series("b", [(10, 9)])])
    assert svg.count("<polyline") == 2
    # The plot spans x 60-400 and y 255 (0) to 30 (50, the nice ceiling of 40).
    assert 'points="60.0,237.0 400.0,75.0"' in svg


def test_a_time_axis_gets_six_round_ticks() -> None:
    svg = line_chart("m", "s", "MB", [Series("pid 1", [(35.0 + i, 100.0) for i in range(20)])])
    labels = re.findall(r'y="270" text-anchor="middle">(\d+)</text>', svg)
    assert labels == ["35", "39", "43", "46", "50", "54"]


def test_terminal_report_shows_checks_load_and_verdict() -> None:
    console = Console(record=True, width=200)
    console.print(render(REPORT))
    text = console.export_text()
    assert "fix: set RATE_LIMIT_BACKEND=redis" in text
    assert "NO-GO  2 checks in 42 s against http://127.0.0.1:8123; failed: exact-limit" in text
    row = next(line for line in text.splitlines() if "7000" in line)
    cells = [cell.strip() for cell in row.strip("│ ").split("│")]
    assert cells == ["50", "7000", "700", "100", "40", "90", "150", "1000", "0.05", "0", "0", "0"]


def test_a_table_of_passes_leaves_out_criteria_and_prints_whole_floats_plainly() -> None:
    console = Console(record=True, width=200)
    console.print(check_table([REPORT.checks[1]]))
    text = console.export_text()
    assert "rps=600 " in text
    assert "criterion" not in text
