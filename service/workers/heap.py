"""Keep a worker's long-lived objects out of the cyclic garbage collector's full passes.

A worker's key cache holds up to 100,000 records; a full (oldest-generation) collection walks
every tracked object, and with a full cache that is a ~70 ms stall of the event loop, repeated
as the cache churns: a p99 spike whatever the request. What has survived the young
generations for a while is moved to the permanent generation, which collections skip. Objects
there are still freed by reference counting when dropped (an evicted record goes at once).
Reference cycles are not: a request in flight at a freeze has its cycles (tasks, futures,
exception frames) frozen with it, and once it ends they are garbage no collection sees. A soak
at 50 users showed what that costs: RSS climbing ~13 MB per 10 minutes per worker, for good.
So every `FULL_COLLECT_EVERY` freezes, the frozen objects are thawed and collected in full
once: the stall is paid every five minutes instead of on every churn, and what was frozen in
flight is freed then.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc

FREEZE_EVERY_S = 10.0
FULL_COLLECT_EVERY = 30  # freezes: one full collection every 5 minutes


class HeapKeeper:
    """One step per interval: collect the young generations and freeze what is left, or, every
    `full_every` steps, thaw everything and collect in full first."""

    def __init__(self, *, full_every: int = FULL_COLLECT_EVERY) -> None:
        self._full_every = full_every
        self._steps = 0

    def step(self) -> None:
        self._steps += 1
        if self._steps % self._full_every == 0:
            gc.unfreeze()
            gc.collect()
        else:
            gc.collect(1)
        gc.freeze()


async def freeze_long_lived(stop: asyncio.Event, *, every_s: float = FREEZE_EVERY_S) -> None:
    """Until `stop`: a `HeapKeeper` step every `every_s`."""
    keeper = HeapKeeper()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every_s)
        keeper.step()
