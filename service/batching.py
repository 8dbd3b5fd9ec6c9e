"""`TickBatcher`: the calls made in one event-loop tick leave as one batch (one Redis pipeline,
one SQL query).

Under load a worker has dozens of cold keys waiting at once; paying a round trip's fixed cost
once per batch instead of once per key is most of what a cold key costs.
The limiter batches its own script calls the same way but by hand, because it must also know
which of its calls Redis may have run when a batch fails (see `redis_limiter.py`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item", bound=Hashable)
Result = TypeVar("Result")


async def drain_tasks(tasks: set[asyncio.Task[None]]) -> None:
    """Wait until `tasks` (whose done-callbacks discard them) is empty, tasks added meanwhile
    included. Finished tasks are removed here too: from Python 3.12, gathering tasks that are
    all done does not yield to the loop, so their pending callbacks would never run and the
    loop would spin forever."""
    while tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
        tasks.difference_update([task for task in tasks if task.done()])


class TickBatcher(Generic[Item, Result]):
    """`submit(item)` resolves with `run(batch)`'s result for that item; the same item submitted
    twice in one batch is sent once. At most `max_in_flight` batches run at a time: calls made
    meanwhile wait and leave together in the next one."""

    def __init__(
        self,
        run: Callable[[Sequence[Item]], Awaitable[Sequence[Result]]],
        *,
        max_in_flight: int,
    ) -> None:
        self._run = run
        self._max_in_flight = max_in_flight
        self._pending: dict[Item, asyncio.Future[Result]] = {}
        self._is_batch_starting = False
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, item: Item) -> asyncio.Future[Result]:
        future = self._pending.get(item)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._pending[item] = future
            self._maybe_start()
        return future

    async def drain(self) -> None:
        """Wait for every batch queued or running."""
        await drain_tasks(self._tasks)

    def _maybe_start(self) -> None:
        if self._is_batch_starting or self._in_flight >= self._max_in_flight or not self._pending:
            return
        # The task's first step runs on the next loop iteration, after every call of this one.
        self._is_batch_starting = True
        self._in_flight += 1
        task = asyncio.get_running_loop().create_task(self._run_batch())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_batch(self) -> None:
        self._is_batch_starting = False
        batch, self._pending = self._pending, {}
        try:
            results = await self._run(list(batch))
        except Exception as error:
            for future in batch.values():
                if not future.done():
                    future.set_exception(error)
        else:
            for future, result in zip(batch.values(), results, strict=True):
                if not future.done():
                    future.set_result(result)
        finally:
            self._in_flight -= 1
            self._maybe_start()
