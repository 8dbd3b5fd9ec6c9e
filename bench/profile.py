"""py-spy under load: collapsed stacks per worker, and the hot spots they add up to."""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from rich.console import Console
from rich.table import Table

SAMPLE_RATE_HZ = 200
_NO_FRAME = "(native code, no Python frame)"
_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def start_recording(
    py_spy: Path, pids: Iterable[int], duration_s: int, out_dir: Path
) -> list[tuple[subprocess.Popen[bytes], Path]]:
    """One `py-spy record --format raw` per worker; `--nonblocking` so the worker never pauses."""
    out_dir.mkdir(parents=True, exist_ok=True)
    recordings = []
    for pid in pids:
        output = out_dir / f"gatekey-worker-{pid}.txt"
        command = [
            str(py_spy), "record", "--pid", str(pid), "--duration", str(duration_s),
            "--rate", str(SAMPLE_RATE_HZ), "--format", "raw", "--nonblocking",
            "--output", str(output),
        ]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        recordings.append((process, output))
    return recordings


def finish_recording(
    recordings: list[tuple[subprocess.Popen[bytes], Path]], timeout_s: float
) -> list[Path]:
    finished = []
    for process, output in recordings:
        _, stderr = process.communicate(timeout=timeout_s)
        if process.returncode != 0:
            raise RuntimeError(f"py-spy failed: {stderr.decode(errors='replace').strip()}")
        finished.append(output)
    return finished


def _short(frame: str) -> str:
    """`function (path/to/site-packages/pkg/mod.py:12)` → `pkg/mod.py:function`."""
    match = _FRAME.match(frame)
    if match is None:
        return frame
    path = match["file"].split("site-packages/")[-1]
    if "/service/" in path:
        path = "service/" + path.rsplit("/service/", 1)[1]
    return f"{path}:{match['function']}"


def _is_idle_thread(frames: list[str]) -> bool:
    """A thread-pool thread waiting for work: py-spy's --nonblocking sampling counts it busy."""
    return frames[0].startswith("threading.py:") and frames[-1].startswith(
        ("threading.py:", "queue.py:")
    )


def hot_spots(
    paths: Iterable[Path], top: int = 15
) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """(samples, top functions by own time, top gatekey functions by time including callees).

    Idle thread-pool threads are left out, so shares are of the time the worker was busy.
    """
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for path in paths:
        for line in path.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            count = int(count_text)
            frames = [_short(frame) for frame in stack.split(";")] if stack else [_NO_FRAME]
            if _is_idle_thread(frames):
                continue
            total += count
            own[frames[-1]] += count
            for frame in set(frames):
                if frame.startswith("service/"):
                    inclusive[frame] += count
    return total, own.most_common(top), inclusive.most_common(top)


def render(console: Console, paths: list[Path]) -> None:
    total, own, inclusive = hot_spots(paths)
    for title, rows in (
        ("own time (all code)", own),
        ("gatekey functions, including callees", inclusive),
    ):
        table = Table(title=f"py-spy: {title}, {total:,} samples", title_justify="left")
        table.add_column("share", justify="right")
        table.add_column("function")
        for name, count in rows:
            table.add_row(f"{100 * count / max(total, 1):.1f} %", name)
        console.print(table)
    console.print(
        "collapsed stacks (load into speedscope.app or flamegraph.pl): "
        + ", ".join(map(str, paths))
    )
