"""Reading a server's log for what went wrong unseen: tracebacks, asyncio's lost exceptions and
ERROR records, in gatekey's console and JSON formats and uvicorn's own lines."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from service.selftest import fixes
from service.selftest.model import CheckResult, Figure, Outcome, Phase

TRACEBACK_START = "Traceback (most recent call last):"
# What asyncio logs when an exception escaped a task nobody awaited or a loop callback.
ASYNCIO_LOST = ("Task exception was never retrieved", "Exception in callback")
_FRAME_RE = re.compile(r'^\s+File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>\S+)')
# gatekey's console lines (`2026-01-01 12:00:00,123 ERROR   ...`) and uvicorn's (`ERROR:    ...`).
_CONSOLE_ERROR_RE = re.compile(
    r"^(?:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?:ERROR|CRITICAL)\b|(?:ERROR|CRITICAL):\s)"
)
# Frames of installed packages, the standard library and compiled modules: not where to look first.
_LIBRARY_RE = re.compile(r"(site-packages|dist-packages|/lib/python\d|^<|\.pyx$)")
_CHAIN_MARKERS = ("The above exception was the direct cause", "During handling of the above")
_JSON_ERROR_LEVELS = frozenset({"error", "critical"})


@dataclass(slots=True)
class LogFindings:
    """What the log lines held, counted per kind; the first traceback's last frame and error."""

    lines: int = 0
    tracebacks: int = 0
    asyncio_lost: int = 0
    error_records: int = 0
    first_frame: str = ""
    first_own_frame: str = ""  # the last frame outside installed packages and the stdlib
    first_error: str = ""
    sources: list[str] = field(default_factory=list)

    @property
    def unhandled(self) -> int:
        return self.tracebacks + self.asyncio_lost

    def scan(self, text: str) -> None:
        lines = text.splitlines()
        self.lines += len(lines)
        for index, line in enumerate(lines):
            if line.startswith("{"):
                self._json_record(line)
                continue
            if any(marker in line for marker in ASYNCIO_LOST):
                self.asyncio_lost += 1
            if _CONSOLE_ERROR_RE.match(line):
                self.error_records += 1
            if line.startswith(TRACEBACK_START):
                self._traceback(lines[index + 1 :], chained=_follows_chain(lines[:index]))

    def _json_record(self, line: str) -> None:
        try:
            record = json.loads(line)
        except ValueError:
            return
        if not isinstance(record, dict):
            return
        if str(record.get("level", "")).lower() in _JSON_ERROR_LEVELS:
            self.error_records += 1
        if any(marker in str(record.get("event", "")) for marker in ASYNCIO_LOST):
            self.asyncio_lost += 1
        exception = str(record.get("exception", ""))
        lines = exception.splitlines()
        for index, text in enumerate(lines):
            if text.startswith(TRACEBACK_START):
                self._traceback(lines[index + 1 :], chained=_follows_chain(lines[:index]))

    def _traceback(self, following: list[str], *, chained: bool) -> None:
        """Count one traceback (a chain of them is one: its last part is what escaped); the
        first one seen names its last frame and its error line."""
        if not chained:
            self.tracebacks += 1
        if self.tracebacks > 1:
            return
        for line in following:
            match = _FRAME_RE.match(line)
            if match:
                self.first_frame = f"{match['file']}:{match['line']} in {match['func']}"
                if not _LIBRARY_RE.search(match["file"]):
                    self.first_own_frame = self.first_frame
            elif line and not line[0].isspace():
                self.first_error = line.strip()[:200]
                break


def _follows_chain(before: list[str]) -> bool:
    """Whether a traceback continues the one above ("The above exception was the direct cause
    of the following exception:", "During handling of the above exception, ...")."""
    previous = next((line for line in reversed(before) if line.strip()), "")
    return previous.startswith(_CHAIN_MARKERS)


class LogWatch:
    """Log files to judge: only what is written to them from now on counts (a file that shrank
    was rotated, and is read from its start)."""

    def __init__(self, paths: list[Path]) -> None:
        self._offsets = {path: _size(path) for path in paths}

    def findings(self) -> LogFindings:
        findings = LogFindings()
        for path, offset in self._offsets.items():
            if not path.exists():
                continue
            size = _size(path)
            with path.open("rb") as log:
                log.seek(offset if size >= offset else 0)
                findings.scan(log.read().decode(errors="replace"))
            findings.sources.append(path.name)
        return findings


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


CRITERION = (
    "no traceback and no asyncio 'Task exception was never retrieved' / 'Exception in callback' "
    "in the server's output during the run (ERROR records without one warn)"
)


def server_log_check(findings: LogFindings | None) -> CheckResult:
    """Unhandled exceptions are NO-GO; ERROR records alone warn; no log to read is not judged."""
    name = "server-log"
    if findings is None:
        return CheckResult(
            Phase.FULL_STACK,
            name,
            Outcome.WARN,
            {"judged": "not judged: no server log (pass --server-log FILE with --url)"},
            CRITERION,
            fixes.SERVER_LOG_MISSING,
        )
    figures: dict[str, Figure] = {
        "logs": " ".join(findings.sources),
        "lines": findings.lines,
        "tracebacks": findings.tracebacks,
        "asyncio_lost": findings.asyncio_lost,
        "error_records": findings.error_records,
    }
    if findings.unhandled:
        figures |= {
            "first_frame": findings.first_frame or "none",
            "first_own_frame": findings.first_own_frame or "none",
            "first_error": findings.first_error,
        }
        where = findings.first_own_frame or findings.first_frame or "the first traceback"
        fix = f"{fixes.UNHANDLED_EXCEPTION}; the first is raised at {where}"
        return CheckResult(Phase.FULL_STACK, name, Outcome.FAIL, figures, CRITERION, fix)
    if findings.error_records:
        return CheckResult(
            Phase.FULL_STACK, name, Outcome.WARN, figures, CRITERION, fixes.ERROR_RECORDS
        )
    return CheckResult(Phase.FULL_STACK, name, Outcome.PASS, figures, CRITERION)
