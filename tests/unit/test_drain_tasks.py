"""`drain_tasks`: waiting for a set of background tasks ends on every supported Python."""

from __future__ import annotations

import asyncio
import threading

from service.batching import drain_tasks


async def _nothing() -> None:
    return None


async def _drain_a_finished_task_whose_callback_has_not_run() -> None:
    tasks: set[asyncio.Task[None]] = set()
    task = asyncio.get_running_loop().create_task(_nothing())
    tasks.add(task)
    await task
    task.add_done_callback(tasks.discard)  # scheduled for the next loop iteration, not run yet
    await drain_tasks(tasks)


def test_a_finished_task_whose_callback_has_not_run_yet_does_not_spin() -> None:
    # From Python 3.12 gathering only finished tasks does not yield to the loop: a loop that
    # waited for the done-callbacks to empty the set spun forever (found by `make test-matrix`).
    # A spinning coroutine never yields, so no asyncio timeout could stop it: a thread bounds it.
    drained = threading.Thread(
        target=asyncio.run, args=(_drain_a_finished_task_whose_callback_has_not_run(),), daemon=True
    )
    drained.start()
    drained.join(timeout=30)
    assert not drained.is_alive()


async def test_tasks_started_while_draining_are_waited_for() -> None:
    tasks: set[asyncio.Task[None]] = set()
    finished: list[str] = []

    def start(name: str, then: str | None = None) -> None:
        async def run() -> None:
            finished.append(name)
            if then is not None:
                start(then)

        task = asyncio.get_running_loop().create_task(run())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    start("first", then="second")
    await asyncio.wait_for(drain_tasks(tasks), timeout=10)
    assert finished == ["first", "second"]
    assert tasks == set()
