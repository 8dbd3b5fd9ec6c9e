"""`Deadline`: a timeout for a Redis round trip that a busy event loop cannot trip by itself.

`asyncio.timeout` fires on wall time: when the loop is busy (or starved of CPU), a reply can sit
unread in the socket while the timer expires, and an answered batch would be counted as a Redis
failure. Here an expiry is only judged a short grace later, when the loop has been round at least
once (so a reply already received has been read), and replies read since the timer was armed
extend it, a bounded number of times.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

# A timer armed now fires on a later loop iteration (asyncio and uvloop alike), after that
# iteration's socket reads and the task wake-ups they queued.
_GRACE_S = 0.005


class Deadline:
    """`with Deadline(period_s): ...` inside a task raises `TimeoutError` once Redis is silent.

    Call `progress()` whenever a reply is read.
    """

    def __init__(self, period_s: float, *, extensions: int = 3) -> None:
        self._period_s = period_s
        self._extensions_left = extensions
        self._progress = 0
        self._progress_seen = 0
        self._has_fired = False
        self._loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("Deadline must be used inside a task")
        self._task = task
        self._cancelling = 0
        self._handle: asyncio.TimerHandle | None = None

    def progress(self) -> None:
        self._progress += 1

    def __enter__(self) -> Deadline:
        self._cancelling = self._task.cancelling()
        self._handle = self._loop.call_later(self._period_s, self._expired)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
        if (
            self._has_fired
            and exc_type is asyncio.CancelledError
            and self._task.uncancel() <= self._cancelling
        ):
            raise TimeoutError("Redis did not answer in time") from exc

    def _expired(self) -> None:
        self._handle = self._loop.call_later(_GRACE_S, self._judge)

    def _judge(self) -> None:
        if self._progress != self._progress_seen and self._extensions_left > 0:
            self._progress_seen = self._progress
            self._extensions_left -= 1
            self._handle = self._loop.call_later(self._period_s, self._expired)
            return
        self._has_fired = True
        self._task.cancel()
