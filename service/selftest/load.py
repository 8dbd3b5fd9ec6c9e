"""Load generation: Locust run headless in its own process, its CSV summary parsed.

Locust never runs in the server's process nor in the self-test's: a separate process keeps its
gevent loop and CPU use apart. One Locust process per step; on a 2-core machine one generator
process is enough to saturate the server, and `--processes` would only take CPU from it.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from service.selftest.model import SelftestAborted

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
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

    @property
    def error_rate(self) -> float:
        return self.failures / self.requests if self.requests else 0.0


def parse_locust_csv(text: str) -> LocustStats:
    """Read the `Aggregated` row of Locust's `<prefix>_stats.csv`."""
    for row in csv.DictReader(io.StringIO(text)):
        if row.get("Name") == "Aggregated":
            return LocustStats(
                requests=int(row["Request Count"]),
                failures=int(row["Failure Count"]),
                rps=float(row["Requests/s"]),
                p50_ms=_number(row["50%"]),
                p95_ms=_number(row["95%"]),
                p99_ms=_number(row["99%"]),
            )
    raise SelftestAborted("Locust wrote no aggregated statistics")


def _number(text: str) -> float:
    # Locust writes "N/A" for percentiles of a run without a single request.
    return float(text) if text not in ("", "N/A") else 0.0


def locust_command(*, url: str, users: int, duration_s: float, csv_prefix: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        url,
        "--users",
        str(users),
        "--spawn-rate",
        str(users),
        "--run-time",
        f"{max(1, round(duration_s))}s",
        "--stop-timeout",
        "2",
        "--csv",
        str(csv_prefix),
        "--only-summary",
        "--reset-stats",
        "--loglevel",
        "ERROR",
        "--exit-code-on-error",
        "0",
    ]


async def run_locust(
    *, url: str, key: str, users: int, duration_s: float, workdir: Path
) -> LocustStats:
    """Run one load step to completion and return its aggregated statistics."""
    prefix = workdir / f"locust_{users}u"
    process = await asyncio.create_subprocess_exec(
        *locust_command(url=url, users=users, duration_s=duration_s, csv_prefix=prefix),
        env={**os.environ, "GATEKEY_KEY": key},
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
    stats_file = prefix.with_name(prefix.name + "_stats.csv")
    if not stats_file.exists():
        last = (stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        raise SelftestAborted(f"Locust failed (exit {process.returncode}): {last}")
    return parse_locust_csv(stats_file.read_text())
