"""Load generation: Locust run headless in its own process, its JSON summary parsed.

Locust never runs in the server's process nor in the self-test's: a separate process keeps its
gevent loop and CPU use apart. One Locust process per step; on a 2-core machine one generator
process is enough to saturate the server, and `--processes` would only take CPU from it.
"""

from __future__ import annotations

import asyncio
import csv
import importlib.util
import io
import json
import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from service.selftest.model import SelftestAborted

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
# Read by the locustfile, which this process never imports.
STOP_AFTER_ENV = "GATEKEY_STOP_AFTER"
KEYS_FILE_ENV = "GATEKEY_KEYS_FILE"
# Locust needs a moment to import and spawn; beyond this the step is declared hung.
_STARTUP_GRACE_S = 30.0


@dataclass(frozen=True, slots=True)
class LocustStats:
    """The aggregated row of a Locust run."""

    requests: int
    failures: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    top_failure: str = ""

    @property
    def error_rate(self) -> float:
        return self.failures / self.requests if self.requests else 0.0


def percentile(times: dict[float, int], fraction: float) -> float:
    """Locust's own percentile of a histogram of rounded response times (ms -> count)."""
    total = sum(times.values())
    processed = 0
    for ms in sorted(times, reverse=True):
        processed += times[ms]
        if total - processed <= int(total * fraction):
            return ms
    return 0.0


def top_failure(failures_csv: str) -> str:
    """The most frequent failure in Locust's `<prefix>_failures.csv`, e.g. `GET /v1/usage: ...`."""
    rows = list(csv.DictReader(io.StringIO(failures_csv)))
    if not rows:
        return ""
    top = max(rows, key=lambda row: int(row["Occurrences"]))
    return f"{top['Method']} {top['Name']}: {top['Error']} ×{top['Occurrences']}"[:200]


def parse_locust_json(text: str, *, failures_csv: str = "") -> LocustStats:
    """Aggregate Locust's `--json-file` entries. Its CSV is a snapshot taken every second and
    misses the last second of a run; the JSON is written once the run has stopped."""
    entries = json.loads(text)
    if not entries:
        raise SelftestAborted("Locust made no request")
    times: Counter[float] = Counter()
    for entry in entries:
        times.update({float(ms): count for ms, count in entry["response_times"].items()})
    requests = sum(entry["num_requests"] for entry in entries)
    elapsed = max(e["last_request_timestamp"] for e in entries) - min(
        e["start_time"] for e in entries
    )
    return LocustStats(
        requests=requests,
        failures=sum(entry["num_failures"] for entry in entries),
        rps=requests / elapsed if elapsed > 0 else 0.0,
        p50_ms=percentile(times, 0.50),
        p95_ms=percentile(times, 0.95),
        p99_ms=percentile(times, 0.99),
        top_failure=top_failure(failures_csv),
    )


def locust_command(*, url: str, users: int, duration_s: float, report: Path) -> list[str]:
    """Headless, every user at once, statistics from when they all run; `duration_s` caps it."""
    return [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "--host", url, "--users", str(users), "--spawn-rate", str(users),
        "--run-time", f"{max(1, round(duration_s))}s", "--stop-timeout", "2",
        "--json-file", str(report), "--csv", str(report), "--only-summary", "--reset-stats",
        "--loglevel", "ERROR", "--exit-code-on-error", "0",
    ]  # fmt: skip


async def run_locust(
    *,
    url: str,
    keys_file: Path,
    users: int,
    duration_s: float,
    stop_after: int | None,
    workdir: Path,
) -> LocustStats:
    """Run one load step over the keys in `keys_file` (one a line, each request the next), for
    `duration_s` or until `stop_after` requests, and return its aggregated statistics."""
    if importlib.util.find_spec("locust") is None:  # a runtime-only install leaves it out
        raise SelftestAborted("the load steps need Locust: pip install 'gatekey[selftest]'")
    report = workdir / f"locust_{users}u"  # Locust adds ".json", "_failures.csv"...
    process = await asyncio.create_subprocess_exec(
        *locust_command(url=url, users=users, duration_s=duration_s, report=report),
        env={
            **os.environ,
            KEYS_FILE_ENV: str(keys_file),
            STOP_AFTER_ENV: str(stop_after or ""),
        },
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, stderr = await asyncio.wait_for(
            process.communicate(), timeout=duration_s + _STARTUP_GRACE_S
        )
    except TimeoutError:
        process.kill()
        await process.wait()
        raise SelftestAborted(f"Locust did not finish a {duration_s:.0f} s step") from None
    stats_file = report.with_name(report.name + ".json")
    if not stats_file.exists():
        last = (stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        raise SelftestAborted(f"Locust failed (exit {process.returncode}): {last}")
    failures = report.with_name(report.name + "_failures.csv")
    return parse_locust_json(
        stats_file.read_text(), failures_csv=failures.read_text() if failures.exists() else ""
    )
