"""`selftest --suite` runs a real pytest over a checkout's integration tests: here a small one
made for the test, with a test that passes, one that fails, one that errors and one skipped."""

from __future__ import annotations

from pathlib import Path

from service.config import Settings
from service.selftest import fixes
from service.selftest.gatekey_cli import GatekeyCli
from service.selftest.model import Outcome
from service.selftest.suite import integration_suite

FAILING_SUITE = """
import pytest

@pytest.fixture
def broken():
    raise RuntimeError("fixture")

def test_passes():
    assert 1 + 1 == 2

def test_fails():
    assert 1 + 1 == 3

def test_errors(broken):
    pass

@pytest.mark.skip(reason="not here")
def test_skipped():
    pass
"""


def checkout(root: Path, tests: str) -> Path:
    (root / "tests" / "integration").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    (root / "tests" / "integration" / "test_sample.py").write_text(tests)
    return root


async def test_a_failing_suite_is_no_go_naming_its_failures(
    settings: Settings, tmp_path: Path
) -> None:
    root = checkout(tmp_path / "checkout", FAILING_SUITE)
    statuses: list[str] = []
    check = await integration_suite(GatekeyCli(settings), tmp_path, statuses.append, root=root)
    assert check.result is Outcome.FAIL, check.figures
    figures = check.figures
    assert (figures["passed"], figures["failed"], figures["skipped"]) == (1, 2, 1)
    assert figures["exit_code"] == 1
    assert check.fix == (
        f"{fixes.SUITE_FAILED}: tests/integration/test_sample.py::test_fails "
        "tests/integration/test_sample.py::test_errors"
    )
    assert statuses
    assert statuses[0].startswith("integration suite: ")


async def test_a_passing_suite_passes(settings: Settings, tmp_path: Path) -> None:
    passing = "def test_one():\n    assert True\n\ndef test_two():\n    assert True\n"
    root = checkout(tmp_path / "checkout", passing)
    check = await integration_suite(GatekeyCli(settings), tmp_path, lambda _: None, root=root)
    assert (check.result, check.fix) == (Outcome.PASS, None)
    assert (check.figures["passed"], check.figures["failed"]) == (2, 0)
