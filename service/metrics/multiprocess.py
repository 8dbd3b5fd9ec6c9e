"""prometheus-client's multiprocess mode: the shared directory, and clean-up when a worker dies.

Each worker writes its values to its own files in PROMETHEUS_MULTIPROC_DIR; a scrape merges them.
When a worker dies its `live*` gauge files are removed and its counter and histogram values are
folded into one archive file per type, so totals stay exact across restarts while the directory
holds one set of files per living worker plus the archive, however often workers are replaced.

prometheus-client has no such compaction (it keeps dead workers' files forever), so it is written
here, over its file format (`prometheus_files`), under an flock that scrapes share and folding
takes exclusively, so no scrape sees a worker's counts twice or not at all.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import multiprocess

from service.metrics.prometheus_files import add_file_values, values_are_file_backed

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Stands where a pid stands in a file name (`counter_archive.db`): the collector reads the type
# from the name's first part and merges every `*.db` file, so archives are summed like any worker.
ARCHIVE_NAME = "archive"
# Types whose values of a dead worker still count; gauges are per living worker.
_ACCUMULATING_TYPES = ("counter", "histogram", "summary")
_LOCK_FILE = "compaction.lock"


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
    """Supervisor, once a worker has exited: drop its live gauges (memory, CPU, pool, pending)
    and fold its counters and histograms into the archive.

    No-op in single-process mode. Not `multiprocess_dir()`: the supervisor itself imported
    prometheus-client before it set the variable, and it records no values of its own.
    """
    directory = path if path is not None else os.environ.get(MULTIPROC_DIR_ENV)
    if not directory:
        return
    with directory_lock(directory, exclusive=True):
        multiprocess.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]
        for kind in _ACCUMULATING_TYPES:
            _fold_into_archive(Path(directory), kind, pid)


def _fold_into_archive(directory: Path, kind: str, pid: int) -> None:
    """Add a dead worker's values of one type to that type's archive, then remove its file."""
    dead_file = directory / f"{kind}_{pid}.db"
    if not dead_file.exists():
        return
    add_file_values(dead_file, directory / f"{kind}_{ARCHIVE_NAME}.db")
    dead_file.unlink()


@contextlib.contextmanager
def directory_lock(directory: str | Path, *, exclusive: bool) -> Iterator[None]:
    """An flock on the directory's lock file: shared for a scrape, exclusive for folding.

    Released by the kernel if its holder dies, so a killed worker cannot wedge the others.
    """
    with open(Path(directory) / _LOCK_FILE, "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield


def multiprocess_dir() -> str | None:
    """The multiprocess directory, or None in single-process mode.

    Read from the environment rather than from settings because prometheus-client itself decides
    at import time from this very variable; a mismatch would silently lose this process's values.
    """
    directory = os.environ.get(MULTIPROC_DIR_ENV) or None
    file_backed = values_are_file_backed()
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
