"""The worker's heap policy: long-lived objects leave the collector's full passes."""

from __future__ import annotations

import asyncio
import gc

from service.workers.heap import freeze_long_lived


async def test_objects_that_survive_are_frozen_and_the_job_stops_when_asked() -> None:
    survivor = [object() for _ in range(1000)]  # tracked containers that outlive the pass
    gc.unfreeze()
    stop = asyncio.Event()
    job = asyncio.create_task(freeze_long_lived(stop, every_s=0.0))
    try:
        for _ in range(1000):  # a few loop turns: every_s=0 freezes on each
            if gc.get_freeze_count():
                break
            await asyncio.sleep(0)
        assert gc.is_tracked(survivor)
        assert gc.get_freeze_count() >= len(survivor)
    finally:
        stop.set()
        await asyncio.wait_for(job, timeout=5)
        gc.unfreeze()
