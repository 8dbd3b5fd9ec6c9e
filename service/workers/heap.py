"""Keep a worker's long-lived objects out of the cyclic garbage collector's full passes.

A worker's key cache holds up to 100,000 records; a full (oldest-generation) collection walks
every tracked object, and with a full cache that is a ~70 ms stall of the event loop, repeated
as the cache churns: a p99 spike whatever the request. What has survived the young
generations for a while is moved to the permanent generation, which collections skip. Objects
there are still freed by reference counting when dropped (an evicted record goes at once);
only reference cycles that became garbage after surviving would be kept, and the young
collection first clears the cycles that die young, which is where request garbage lives.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc

FREEZE_EVERY_S = 10.0


async def freeze_long_lived(stop: asyncio.Event, *, every_s: float = FREEZE_EVERY_S) -> None:
    """Until `stop`: every `every_s`, collect the young generations, then freeze the rest."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every_s)
        gc.collect(1)
        gc.freeze()
