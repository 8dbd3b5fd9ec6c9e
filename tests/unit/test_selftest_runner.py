"""Self-test run selection: checks are picked by name; a run of pure checks needs no target."""

from __future__ import annotations

import pytest

from service.config import Settings
from service.selftest.model import CheckResult, Outcome, SelftestAborted, Verdict
from service.selftest.runner import ALL_CHECKS, Options, run_selftest


class Recorder:
    def __init__(self) -> None:
        self.statuses: list[str] = []
        self.done_names: list[str] = []

    def status(self, text: str) -> None:
        self.statuses.append(text)

    def done(self, result: CheckResult) -> None:
        self.done_names.append(result.name)


def test_every_check_has_a_distinct_name() -> None:
    assert len(ALL_CHECKS) == len(set(ALL_CHECKS)) == 30
    assert Options().chosen() == frozenset(ALL_CHECKS)


def test_unknown_check_names_stop_the_run_naming_them() -> None:
    with pytest.raises(SelftestAborted, match=r"unknown check bogus, nope; known: settings, "):
        Options(only=frozenset({"exact-limit", "nope", "bogus"})).chosen()


async def test_a_run_of_the_settings_check_alone_starts_nothing() -> None:
    recorder = Recorder()
    report = await run_selftest(Settings(), Options(only=frozenset({"settings"})), recorder)
    assert [(c.name, c.result) for c in report.checks] == [("settings", Outcome.PASS)]
    assert (report.verdict, report.target, report.load) == (Verdict.GO, "not started", [])
    assert (recorder.statuses, recorder.done_names) == (["pre-flight"], ["settings"])
