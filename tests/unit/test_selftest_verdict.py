"""The self-test verdict: GO without failures; degradation warns over 5 %, fails over 10 %."""

from __future__ import annotations

import pytest

from service.selftest.model import CheckResult, LoadStep, Outcome, Phase, Verdict, judge
from service.selftest.stats import relative_change, theil_sen_slope
from service.selftest.verdict import compare_with_baseline, decide


def check(result: Outcome) -> CheckResult:
    return CheckResult(Phase.PAIRS, "x", result, {}, "criterion", None)


def step(users: int, rps: float, p95_ms: float) -> LoadStep:
    return LoadStep(users, 3000, rps, 2.0, p95_ms, 20.0, 0.0)


def test_go_needs_checks_and_no_failure() -> None:
    assert decide([check(Outcome.PASS), check(Outcome.WARN)]) is Verdict.GO
    assert decide([check(Outcome.PASS), check(Outcome.FAIL)]) is Verdict.NO_GO
    assert decide([]) is Verdict.NO_GO


def test_judge_names_the_fix_only_when_not_passed() -> None:
    passed = judge(Phase.LOAD, "n", passed=True, figures={}, criterion="c", fix="do x")
    warned = judge(Phase.LOAD, "n", passed=True, warned=True, figures={}, criterion="c", fix="do x")
    failed = judge(
        Phase.LOAD, "n", passed=False, warned=True, figures={}, criterion="c", fix="do x"
    )
    assert [(c.result, c.fix) for c in (passed, warned, failed)] == [
        (Outcome.PASS, None),
        (Outcome.WARN, "do x"),
        (Outcome.FAIL, "do x"),
    ]


@pytest.mark.parametrize(
    ("rps", "p95_ms", "expected"),
    [
        (1000.0, 10.0, Outcome.PASS),
        (950.0, 10.0, Outcome.PASS),  # exactly 5 % is still within
        (940.0, 10.0, Outcome.WARN),
        (900.0, 10.0, Outcome.WARN),  # exactly 10 % warns
        (899.0, 10.0, Outcome.FAIL),
        (1000.0, 11.5, Outcome.PASS),  # 1 ms of it is Locust's resolution: 5 %
        (1000.0, 12.0, Outcome.WARN),
        (1000.0, 12.2, Outcome.FAIL),
    ],
)
def test_degradation_thresholds(rps: float, p95_ms: float, expected: Outcome) -> None:
    baseline = [step(10, 1000.0, 10.0)]
    assert compare_with_baseline([step(10, rps, p95_ms)], baseline).result is expected


def test_half_the_baseline_throughput_is_no_go() -> None:
    result = compare_with_baseline(
        [step(10, 500.0, 10.0), step(50, 600.0, 30.0)],
        [step(10, 1000.0, 10.0), step(50, 1200.0, 30.0), step(100, 1300.0, 60.0)],
    )
    assert result.result is Outcome.FAIL
    assert result.figures == {
        "rps_drop_10u": 0.5,
        "p95_rise_10u": 0.0,
        "rps_drop_50u": 0.5,
        "p95_rise_50u": 0.0,
        "worst": 0.5,
    }
    assert decide([result]) is Verdict.NO_GO


def test_a_baseline_without_common_user_levels_fails() -> None:
    result = compare_with_baseline([step(10, 1000.0, 10.0)], [step(20, 1000.0, 10.0)])
    assert (result.result, result.fix) == (
        Outcome.FAIL,
        "run the baseline with the same --users levels",
    )


def test_theil_sen_ignores_one_outlier() -> None:
    xs = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert theil_sen_slope(xs, [0.0, 2.0, 4.0, 60.0, 8.0, 10.0, 12.0]) == 2.0
    assert theil_sen_slope([1.0, 1.0], [3.0, 5.0]) == 0.0


def test_relative_change() -> None:
    assert relative_change(200.0, 150.0) == -0.25
    assert relative_change(0.0, 5.0) == 0.0
