"""The Go/No-Go decision and the comparison with a baseline run. Pure."""

from __future__ import annotations

from service.selftest import fixes
from service.selftest.model import CheckResult, LoadStep, Outcome, Phase, Verdict, judge
from service.selftest.stats import relative_change

WARN_DEGRADATION = 0.05
FAIL_DEGRADATION = 0.10
# Locust reports percentiles in whole milliseconds: a 1 ms step on a 3 ms p95 is resolution,
# not a 33 % regression.
P95_RESOLUTION_MS = 1.0


def decide(checks: list[CheckResult]) -> Verdict:
    """GO when no check failed. Error rate, leaks and degradation are checks themselves; a warning
    (5-10 % degradation, a short load step) is reported but does not stop a release."""
    if not checks or any(check.result is Outcome.FAIL for check in checks):
        return Verdict.NO_GO
    return Verdict.GO


def _degradations(current: list[LoadStep], baseline: list[LoadStep]) -> dict[str, float]:
    """Per users level present in both runs: throughput drop and p95 rise, as fractions."""
    earlier = {step.users: step for step in baseline}
    figures: dict[str, float] = {}
    for step in current:
        before = earlier.get(step.users)
        if before is None:
            continue
        figures[f"rps_drop_{step.users}u"] = round(-relative_change(before.rps, step.rps), 4)
        p95_ms = max(before.p95_ms, step.p95_ms - P95_RESOLUTION_MS)
        figures[f"p95_rise_{step.users}u"] = round(relative_change(before.p95_ms, p95_ms), 4)
    return figures


def compare_with_baseline(current: list[LoadStep], baseline: list[LoadStep]) -> CheckResult:
    figures = _degradations(current, baseline)
    worst = max(figures.values(), default=0.0)
    return judge(
        Phase.LOAD,
        "degradation",
        passed=bool(figures) and worst <= FAIL_DEGRADATION,
        warned=worst > WARN_DEGRADATION,
        figures={**figures, "worst": worst},
        criterion="throughput drop and p95 rise ≤ 5 % (warning to 10 %, NO-GO above)",
        fix=fixes.LATENCY if figures else "run the baseline with the same --users levels",
    )
