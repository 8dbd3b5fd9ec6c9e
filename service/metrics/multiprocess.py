"""prometheus-client's multiprocess mode: the shared directory, and clean-up when a worker dies.

Each worker writes its values to its own files in PROMETHEUS_MULTIPROC_DIR; a scrape merges them.
Counter and histogram files of dead workers stay and keep counting toward the totals (that is what
keeps totals exact across restarts); `live*` gauge files are removed when a worker dies.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import multiprocess, values

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_dir(path: str | Path) -> Path:
    """Supervisor, before it starts workers: empty the directory, point the workers at it.

    Only `*.db` files are removed, so a directory shared with other files is safe. One
    directory per supervisor: a second supervisor would wipe the first one's counts.
    """
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    # Workers inherit the environment; prometheus-client picks file-backed values from this
    # variable when it is first imported, which in a spawned worker happens after this point.
    os.environ[MULTIPROC_DIR_ENV] = str(directory)
    return directory


def mark_worker_dead(pid: int, path: str | Path | None = None) -> None:
    """Supervisor, once a worker has exited: drop its live gauges (memory, CPU, pool, pending).

    No-op in single-process mode. Not `multiprocess_dir()`: the supervisor itself imported
    prometheus-client before it set the variable, and it records no values of its own.
    """
    directory = path if path is not None else os.environ.get(MULTIPROC_DIR_ENV)
    if directory:
        multiprocess.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]


def multiprocess_dir() -> str | None:
    """The multiprocess directory, or None in single-process mode.

    Read from the environment rather than from settings because prometheus-client itself decides
    at import time from this very variable; a mismatch would silently lose this process's values.
    """
    directory = os.environ.get(MULTIPROC_DIR_ENV) or None
    # Every prometheus-client value class carries `_multiprocess`; only the file-backed one is True.
    file_backed = bool(values.ValueClass._multiprocess)
    if directory is not None and not file_backed:
        raise RuntimeError(
            f"{MULTIPROC_DIR_ENV} was set after prometheus_client was imported in this process; "
            "set it before the worker process starts"
        )
    if directory is None and file_backed:
        raise RuntimeError(
            f"prometheus_client is in multiprocess mode but {MULTIPROC_DIR_ENV} is unset"
        )
    if directory is not None and not os.path.isdir(directory):
        raise RuntimeError(f"{MULTIPROC_DIR_ENV}={directory} is not a directory")
    return directory
