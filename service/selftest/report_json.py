"""The `--json` report (the README's stable keys) and reading one back as a baseline."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from service.selftest.model import LoadStep, Report, SelftestAborted

_STEP_KEYS = ("users", "requests", "rps", "p50_ms", "p95_ms", "p99_ms", "error_rate")


def report_dict(report: Report) -> dict[str, Any]:
    """The README's stable keys; load steps also carry their resource figures under extra keys."""
    return {
        "verdict": report.verdict.value,
        "started_at": report.started_at.isoformat(),
        "duration_s": round(report.duration_s, 1),
        "target": report.target,
        "checks": [
            {
                "phase": check.phase.value,
                "name": check.name,
                "result": check.result.value,
                "figures": check.figures,
                "criterion": check.criterion,
                "fix": check.fix,
                "duration_s": None if check.duration_s is None else round(check.duration_s, 2),
            }
            for check in report.checks
        ],
        "load": [asdict(step) for step in report.load],
        "soak": [asdict(sample) for sample in report.soak],
    }


def write_json(report: Report, path: Path) -> None:
    path.write_text(json.dumps(report_dict(report), indent=2) + "\n")


def read_baseline(path: Path) -> list[LoadStep]:
    """The load steps of an earlier `--json` report; a file that is not one stops the run."""
    try:
        data = json.loads(path.read_text())
        steps = [LoadStep(**{key: step[key] for key in _STEP_KEYS}) for step in data["load"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SelftestAborted(f"baseline {path} is not a selftest --json report: {exc}") from None
    if not steps:
        raise SelftestAborted(f"baseline {path} has no load steps to compare with")
    return steps
