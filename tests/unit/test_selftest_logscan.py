"""The server-log check: tracebacks, asyncio's lost exceptions and ERROR records, in gatekey's
console and JSON formats and uvicorn's own lines; no log is "not judged", never a pass."""

from __future__ import annotations

import json
from pathlib import Path

from service.selftest import fixes
from service.selftest.logscan import LogFindings, LogWatch, server_log_check
from service.selftest.model import Outcome

TRACEBACK = """Traceback (most recent call last):
  File "/srv/service/app.py", line 10, in handle
    await step()
  File "/srv/service/usage/flusher.py", line 42, in store
    await execute()
  File "/venv/lib/python3.11/site-packages/asyncpg/connection.py", line 7, in execute
    raise RuntimeError("boom")
RuntimeError: boom"""


def findings_of(text: str) -> LogFindings:
    findings = LogFindings()
    findings.scan(text)
    return findings


def test_a_console_traceback_names_its_last_frame_and_error() -> None:
    text = f"2026-01-01 12:00:00,123 ERROR   request_failed request_id=abc\n{TRACEBACK}\n"
    findings = findings_of(text + "ERROR:    Exception in ASGI application\n" + TRACEBACK)
    assert (findings.tracebacks, findings.error_records, findings.asyncio_lost) == (2, 2, 0)
    assert findings.first_frame == (
        "/venv/lib/python3.11/site-packages/asyncpg/connection.py:7 in execute"
    )
    assert findings.first_own_frame == "/srv/service/usage/flusher.py:42 in store"
    assert findings.first_error == "RuntimeError: boom"
    check = server_log_check(findings)
    assert check.result is Outcome.FAIL
    assert check.figures["first_own_frame"] == "/srv/service/usage/flusher.py:42 in store"
    where = findings.first_own_frame
    assert check.fix == f"{fixes.UNHANDLED_EXCEPTION}; the first is raised at {where}"


def test_a_chain_of_tracebacks_is_one_judged_by_its_last_part() -> None:
    cause = 'Traceback (most recent call last):\n  File "<stdin>", line 1, in <module>\nKeyError: 1'
    text = f"{cause}\n\nThe above exception was the direct cause of the following exception:\n\n"
    findings = findings_of(text + TRACEBACK)
    assert findings.tracebacks == 1
    assert findings.first_own_frame == "/srv/service/usage/flusher.py:42 in store"
    assert findings.first_error == "RuntimeError: boom"


def test_json_records_count_levels_exceptions_and_asyncio_events() -> None:
    lines = [
        {"level": "info", "event": "usage_flush_recovered"},
        {"level": "warning", "event": "usage_flush_failed", "exception": TRACEBACK},
        {"level": "error", "event": "Task exception was never retrieved"},
        {"level": "error", "event": "request_failed"},
    ]
    findings = findings_of("\n".join(json.dumps(line) for line in lines) + "\n{not json\n")
    assert (findings.tracebacks, findings.asyncio_lost, findings.error_records) == (1, 1, 2)
    assert findings.lines == 5
    assert server_log_check(findings).result is Outcome.FAIL


def test_asyncio_lines_in_text_are_unhandled() -> None:
    findings = findings_of("Exception in callback Foo.bar()\nhandle: <Handle Foo.bar()>\n")
    assert (findings.asyncio_lost, findings.tracebacks) == (1, 0)
    assert server_log_check(findings).result is Outcome.FAIL


def test_error_records_alone_warn_and_a_clean_log_passes() -> None:
    errors = findings_of("2026-01-01 12:00:00,123 ERROR   something_odd\n")
    assert server_log_check(errors).result is Outcome.WARN
    clean = findings_of("2026-01-01 12:00:00,123 INFO    started\nINFO:     Started server\n")
    check = server_log_check(clean)
    assert (check.result, check.fix, check.figures["tracebacks"]) == (Outcome.PASS, None, 0)


def test_no_log_is_not_judged_and_never_passes() -> None:
    check = server_log_check(None)
    assert check.result is Outcome.WARN
    assert "not judged" in str(check.figures["judged"])
    assert check.fix == fixes.SERVER_LOG_MISSING


def test_a_watch_reads_only_what_was_written_after_it_began(tmp_path: Path) -> None:
    old, rotated = tmp_path / "old.log", tmp_path / "rotated.log"
    old.write_text(TRACEBACK + "\n")
    rotated.write_text("x" * 1000)
    watch = LogWatch([old, rotated, tmp_path / "appears-later.log"])
    with old.open("a") as log:
        log.write("INFO fine\n")
    rotated.write_text(TRACEBACK + "\n")  # shorter than before: rotated, read from the start
    (tmp_path / "appears-later.log").write_text("Task exception was never retrieved\n")
    findings = watch.findings()
    assert (findings.tracebacks, findings.asyncio_lost) == (1, 1)
    assert findings.sources == ["old.log", "rotated.log", "appears-later.log"]
