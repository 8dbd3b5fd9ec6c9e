"""The run's scenarios: how many keys the load rotates over, written to the files wrk reads.

`keys N`: the first N keys, round-robin, each seen every N requests (a customer base of N keys
at saturation). `cold N`: N other keys in a seeded random order, each sent once until the file
is exhausted, so every request is a key the server has not seen during the run.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from bench.wrk import KeyWalk

ROTATE, COLD = "keys", "cold"
_SEED = 12


@dataclass(frozen=True, slots=True)
class Scenario:
    kind: str  # ROTATE or COLD
    size: int
    walk: KeyWalk
    first_key: str

    @property
    def is_single_key(self) -> bool:
        return self.kind == ROTATE and self.size == 1

    @property
    def name(self) -> str:
        if self.kind == COLD:
            return f"cold {self.size:,}"
        return f"{self.size:,} key" + ("s" if self.size > 1 else "")


def keys_needed(rotations: list[int], cold: int) -> int:
    """Rotations share the first keys; the cold keys come after them, never seen before."""
    return max(rotations, default=0) + cold


def write_walk(keys: list[str], path: Path) -> KeyWalk:
    path.write_text("\n".join(keys) + "\n")
    return KeyWalk(path, len(keys))


def build(keys: list[str], rotations: list[int], cold: int, folder: Path) -> list[Scenario]:
    """One scenario per rotation size (ascending), then the cold one when `cold` > 0."""
    found = []
    for size in sorted(set(rotations)):
        chosen = keys[:size]
        found.append(
            Scenario(ROTATE, size, write_walk(chosen, folder / f"keys-{size}.txt"), chosen[0])
        )
    if cold:
        start = max(rotations, default=0)
        chosen = keys[start : start + cold]
        random.Random(_SEED).shuffle(chosen)
        found.append(
            Scenario(COLD, cold, write_walk(chosen, folder / f"cold-{cold}.txt"), chosen[0])
        )
    return found
