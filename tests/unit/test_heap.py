"""The worker's heap policy: long-lived objects leave the collector's full passes."""

from __future__ import annotations

import asyncio
import gc
import weakref

from service.workers.heap import HeapKeeper, freeze_long_lived


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


class _Cycle:
    """A tracked object in a reference cycle: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


def test_a_cycle_frozen_in_flight_is_freed_by_the_next_full_collection() -> None:
    gc.unfreeze()
    keeper = HeapKeeper(full_every=3)
    try:
        in_flight = _Cycle()
        alive = weakref.ref(in_flight)
        keeper.step()  # frozen while "in flight"
        del in_flight  # the request ends: its cycle is garbage now
        keeper.step()
        assert alive() is not None  # frozen garbage: the young collections never see it
        keeper.step()  # the third step thaws and collects in full
        assert alive() is None
    finally:
        gc.unfreeze()
