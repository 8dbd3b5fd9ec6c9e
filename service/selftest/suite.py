"""`selftest --suite`: the project's integration suite, run from the checkout, as one check."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

from service.selftest import fixes
from service.selftest.gatekey_cli import GatekeyCli
from service.selftest.model import CheckResult, Figure, Outcome, Phase, SelftestAborted
from service.selftest.preflight import CHECKOUT

SUITE_CHECK = "integration-suite"
SUITE_TIMEOUT_S = 3600.0  # the whole suite runs for minutes; an hour means it hung
_PROGRESS_EVERY_S = 5.0
_FAILED_IDS_SHOWN = 10


def is_checkout(root: Path = CHECKOUT) -> bool:
    return (root / "tests" / "integration").is_dir() and (root / "pyproject.toml").is_file()


def require_checkout() -> None:
    """`--suite` needs the tests: installed from a wheel there are none."""
    if not is_checkout():
        raise SelftestAborted(
            "--suite runs the integration suite from a checkout; this gatekey is installed "
            f"without one ({CHECKOUT} has no tests/integration)"
        )


@dataclass(slots=True)
class SuiteCounts:
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    failing_ids: list[str] = field(default_factory=list)


def read_junit(path: Path) -> SuiteCounts:
    """Counts and failing test ids from pytest's JUnit XML (errors count as failures)."""
    counts = SuiteCounts()
    for case in ElementTree.parse(path).iter("testcase"):  # noqa: S314 (pytest's own file)
        outcome = {child.tag for child in case}
        if outcome & {"failure", "error"}:
            counts.failed += 1
            module, _, name = case.get("classname", "").rpartition(".")
            test_id = f"{module.replace('.', '/')}/{name}.py" if module else name
            counts.failing_ids.append(f"{test_id}::{case.get('name', '?')}")
        elif "skipped" in outcome:
            counts.skipped += 1
        else:
            counts.passed += 1
    return counts


async def integration_suite(
    cli: GatekeyCli, workdir: Path, progress: Callable[[str], None], *, root: Path = CHECKOUT
) -> CheckResult:
    """`pytest tests/integration` in the checkout at `root`, with the run's settings in its
    environment."""
    junit = workdir / "suite.xml"
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pytest", "tests/integration", "-q", "-p", "no:cacheprovider",
        f"--junitxml={junit}",
        cwd=root, env=cli.env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output = asyncio.create_task(process.communicate())
    try:
        while not output.done():
            if time.monotonic() - started > SUITE_TIMEOUT_S:
                raise TimeoutError
            progress(f"integration suite: {time.monotonic() - started:.0f} s")
            await asyncio.wait([output], timeout=_PROGRESS_EVERY_S)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    out = output.result()[0].decode(errors="replace")
    return suite_check(
        read_junit(junit) if junit.exists() else None,
        returncode=process.returncode or 0,
        duration_s=time.monotonic() - started,
        last_line=(out.strip().splitlines() or ["no output"])[-1][:200],
    )


def suite_check(
    counts: SuiteCounts | None, *, returncode: int, duration_s: float, last_line: str
) -> CheckResult:
    criterion = "`pytest tests/integration` exits 0 with no failed or erroring test"
    if counts is None:  # pytest stopped before any test ran (a conftest exit, a usage error)
        figures: dict[str, Figure] = {"exit_code": returncode, "output": last_line}
        return CheckResult(Phase.FULL_STACK, SUITE_CHECK, Outcome.FAIL, figures, criterion,
                           fixes.SUITE_DID_NOT_RUN)  # fmt: skip
    passed = counts.failed == 0 and returncode == 0
    shown = counts.failing_ids[:_FAILED_IDS_SHOWN]
    more = len(counts.failing_ids) - len(shown)
    fix = f"{fixes.SUITE_FAILED}: {' '.join(shown)}" + (f" and {more} more" if more else "")
    if not shown:  # pytest failed outside any test (a session fixture, a collection error)
        fix = f"{fixes.SUITE_DID_NOT_RUN}: {last_line}"
    return CheckResult(
        Phase.FULL_STACK,
        SUITE_CHECK,
        Outcome.PASS if passed else Outcome.FAIL,
        {
            "passed": counts.passed,
            "failed": counts.failed,
            "skipped": counts.skipped,
            "exit_code": returncode,
            "duration_s": round(duration_s, 1),
        },
        criterion,
        None if passed else fix,
    )
