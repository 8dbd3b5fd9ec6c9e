"""What a self-test run produces: check results, load steps, memory samples and the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

Figure = int | float | str


class Phase(StrEnum):
    """The checklist's phases, in the order the report lists them."""

    PREFLIGHT = "preflight"
    PARTS = "parts"
    PAIRS = "pairs"
    FULL_STACK = "full-stack"
    LOAD = "load"


class Outcome(StrEnum):
    PASS = "pass"  # noqa: S105 (a result, not a password)
    WARN = "warn"
    FAIL = "fail"


class Verdict(StrEnum):
    GO = "GO"
    NO_GO = "NO-GO"


class SelftestAborted(Exception):
    """The self-test could not run at all (exit 2); `str()` is one line saying why."""


def one_line(exc: BaseException) -> str:
    """The driver's own message (SQLAlchemy wraps it in several lines), first line only."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return f"{type(exc).__name__}: {(text.splitlines() or [''])[0]}"[:200]


@dataclass(frozen=True, slots=True)
class CheckResult:
    phase: Phase
    name: str
    result: Outcome
    figures: dict[str, Figure]
    criterion: str
    fix: str | None = None
    # How long the check took, set by the runner (None: judged with others, as the load steps).
    duration_s: float | None = None


def judge(
    phase: Phase,
    name: str,
    *,
    passed: bool,
    figures: dict[str, Figure],
    criterion: str,
    fix: str,
    warned: bool = False,
) -> CheckResult:
    """A result whose fix is named only when it did not pass (a warning keeps its fix as advice)."""
    outcome = Outcome.FAIL if not passed else Outcome.WARN if warned else Outcome.PASS
    return CheckResult(
        phase, name, outcome, figures, criterion, None if outcome is Outcome.PASS else fix
    )


@dataclass(frozen=True, slots=True)
class LoadStep:
    """One load step's figures; the first seven fields are the JSON report's stable keys."""

    users: int
    requests: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    error_rate: float
    failures: int = 0
    duration_s: float = 0.0
    worker_cpu_percent: float = 0.0
    worker_rss_mb: float = 0.0
    db_connections: int = 0
    top_failure: str = ""
    p99_ceiling_ms: float = 0.0  # what the step was judged against (0: not judged)
    rps_floor: float = 0.0


@dataclass(frozen=True, slots=True)
class MemorySample:
    """A worker's resident memory at `t_s` seconds into the run."""

    t_s: float
    pid: str
    rss_mb: float


@dataclass(frozen=True, slots=True)
class SoakSample:
    """One value of a soak series at `t_s` seconds into the run: `series` is `rss_mb`,
    `open_fds` (per worker: `source` is its pid), `pg_connections` or `redis_clients`."""

    t_s: float
    series: str
    source: str
    value: float


@dataclass(frozen=True, slots=True)
class Report:
    verdict: Verdict
    started_at: datetime
    duration_s: float
    target: str
    checks: list[CheckResult]
    load: list[LoadStep] = field(default_factory=list)
    memory: list[MemorySample] = field(default_factory=list)
    soak: list[SoakSample] = field(default_factory=list)
