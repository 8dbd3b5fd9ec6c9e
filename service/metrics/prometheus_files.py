"""prometheus-client internals in one place: its per-process value files and its value class.

The library has no public way to add one worker's file to another (its collector only reads) or
to ask whether this process's values are file-backed, so both lean on its internals here, and
tests/unit/test_library_contracts.py fails, naming the installed version, if an upgrade moves them.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import values
from prometheus_client.mmap_dict import MmapedDict


def add_file_values(source: Path, target: Path) -> None:
    """Add each value in the file `source` to the same key's value in `target` (created if absent).

    Keys are the library's own (metric, sample, labels, help), and histogram buckets are stored
    per bucket, not yet cumulative, so the sum is exact.
    """
    totals = MmapedDict(str(target))  # type: ignore[no-untyped-call]
    try:
        for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(str(source)):  # type: ignore[no-untyped-call]
            total, _ = totals.read_value(key)  # type: ignore[no-untyped-call]
            totals.write_value(key, total + value, timestamp)  # type: ignore[no-untyped-call]
    finally:
        totals.close()  # type: ignore[no-untyped-call]


def values_are_file_backed() -> bool:
    """Whether this process's metric values live in the multiprocess directory's files.

    The library picks its value class once, when first imported; every class it picks carries
    `_multiprocess`, true only for the file-backed one.
    """
    return bool(values.ValueClass._multiprocess)
