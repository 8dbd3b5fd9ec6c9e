"""Prometheus's view of the staging stack, by promtool: the configuration and the alert rules
load, and `promtool test rules` makes every alert fire (and stay silent) as intended."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: apt-get install -y prometheus (`.ci/run` does)")
    return subprocess.run(
        [found, *args], cwd=PROMETHEUS, capture_output=True, text=True, check=False, timeout=60
    )


def load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((PROMETHEUS / name).read_text())
    return loaded


@pytest.mark.parametrize(
    "args",
    [("check", "config", "prometheus.yml"), ("check", "rules", "alerts.yml")],
    ids=["config", "rules"],
)
def test_promtool_accepts(args: tuple[str, ...]) -> None:
    result = promtool(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_unit_test_that_makes_it_fire_and_one_that_keeps_it_silent() -> None:
    alerts = {rule["alert"] for group in load("alerts.yml")["groups"] for rule in group["rules"]}
    assert alerts == {
        "GatekeyDown",
        "GatekeyHigh5xxRatio",
        "GatekeyHighP95Latency",
        "GatekeyDbPoolSaturated",
        "GatekeyHigh429Ratio",
        "GatekeyRedisFallbackActive",
        "GatekeyWorkerMemoryGrowth",
    }
    cases = [case for test in load("alerts_test.yml")["tests"] for case in test["alert_rule_test"]]
    firing = {case["alertname"] for case in cases if case["exp_alerts"]}
    silent = {case["alertname"] for case in cases if not case["exp_alerts"]}
    assert firing == silent == alerts
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules_can_fail(tmp_path: Path) -> None:
    """A rule test that expects the wrong thing fails, so the passing run above means something."""
    tests = load("alerts_test.yml")
    tests["tests"] = tests["tests"][:1]
    tests["tests"][0]["alert_rule_test"][0]["exp_alerts"] = [{"exp_labels": {"severity": "x"}}]
    tests["rule_files"] = [str(PROMETHEUS / "alerts.yml")]
    broken = tmp_path / "alerts_test.yml"
    broken.write_text(yaml.safe_dump(tests))
    result = promtool("test", "rules", str(broken))
    assert result.returncode == 1
    assert "FAILED" in result.stdout + result.stderr
