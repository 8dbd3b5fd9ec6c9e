"""`make bench`'s judgement: issue 12's goals against bare FastAPI, FAILED points, cold keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.accuracy import Accuracy
from bench.cpu import APP, CpuUse
from bench.report import BARE, BARE_ASGI, GATEKEY, Measurement
from bench.scenarios import COLD, ROTATE, Scenario, build
from bench.targets import Check, judge
from bench.wrk import KeyWalk, WrkResult


def scenario(kind: str, size: int) -> Scenario:
    return Scenario(kind, size, KeyWalk(Path(f"{kind}-{size}.txt"), size), "gk_x")


def point(where: Scenario, name: str, rps: float, p99_ms: float, errors: int = 0) -> Measurement:
    requests = round(rps * 10)
    load = WrkResult(requests, 10.0, 0, errors, 0, p99_ms / 2, p99_ms, p99_ms)
    cpu = CpuUse({APP: requests / rps / 1000}, 0.0, 0.0, 10.0)
    failures = (f"{errors} socket errors",) if errors else ()
    return Measurement(where, name, load, cpu, failures=failures)


def results_of(checks: list[Check]) -> list[tuple[str, str, bool]]:
    return [(check.point_label, check.goal, check.passed) for check in checks]


def test_each_goal_is_judged_on_bare_fastapi_of_its_own_scenario() -> None:
    fifty, many = scenario(ROTATE, 50), scenario(ROTATE, 5000)
    results = [
        point(fifty, BARE, 10_000, 10.0),
        point(fifty, BARE_ASGI, 20_000, 5.0),
        point(fifty, GATEKEY, 8_600, 19.0),  # 0.86 ≥ 0.85, p99 1.9× ≤ 2×
        point(many, BARE, 10_000, 10.0),
        point(many, GATEKEY, 4_900, 25.0),  # 0.49 < 0.50, p99 2.5× ≤ 3×
    ]
    checks = judge(results, None)
    assert results_of(checks) == [
        ("50 keys: gatekey", "req/s ÷ bare FastAPI", True),
        ("50 keys: gatekey", "p99 ÷ bare FastAPI p99", True),
        ("5,000 keys: gatekey", "req/s ÷ bare FastAPI", False),
        ("5,000 keys: gatekey", "p99 ÷ bare FastAPI p99", True),
    ]
    assert checks[0].asgi_value == pytest.approx(0.43)


def test_a_failed_point_or_reference_fails_its_goals_whatever_the_ratio() -> None:
    one, cold = scenario(ROTATE, 1), scenario(COLD, 100_000)
    results = [
        point(one, BARE, 10_000, 10.0, errors=3),
        point(one, GATEKEY, 9_000, 10.0),
        point(cold, BARE, 10_000, 10.0),
        point(cold, GATEKEY, 9_000, 10.0, errors=1),
    ]
    assert [check.passed for check in judge(results, None)] == [False, False, False]


def test_no_bare_fastapi_no_goal_and_small_cold_sets_have_none() -> None:
    cold = scenario(COLD, 2000)
    assert judge([point(scenario(ROTATE, 50), GATEKEY, 9_000, 1.0)], None) == []
    assert judge([point(cold, BARE, 10_000, 1.0), point(cold, GATEKEY, 9_000, 1.0)], None) == []


def test_accuracy_passes_only_on_exactly_the_limit_with_the_limit_reached() -> None:
    load = WrkResult(5000, 3.0, 4000, 0, 0, 1.0, 2.0, 3.0)
    exact = Accuracy(1000, 1000, 4100, 0, 0, load)
    assert [check.passed for check in judge([], exact)] == [True]
    for wrong in (
        Accuracy(1000, 1001, 4099, 0, 0, load),
        Accuracy(1000, 1000, 0, 0, 0, load),
        Accuracy(1000, 1000, 4100, 0, 7, load),
    ):
        assert [check.passed for check in judge([], wrong)] == [False], wrong


def test_cold_keys_follow_the_rotation_keys_shuffled(tmp_path: Path) -> None:
    keys = [f"gk_{n}" for n in range(60)]
    built = build(keys, [1, 50], 10, tmp_path)
    assert [(s.kind, s.size) for s in built] == [(ROTATE, 1), (ROTATE, 50), (COLD, 10)]
    assert built[1].walk.file.read_text().split() == keys[:50]
    cold = built[2].walk.file.read_text().split()
    assert sorted(cold) == sorted(keys[50:60])
    assert cold != keys[50:60]
    assert built[2].first_key == cold[0]
