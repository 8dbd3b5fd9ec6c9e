"""The flusher's log during an outage: one line when it starts and one when it ends, no flood."""

from __future__ import annotations

import logging
from typing import cast

import pytest

from service.config import Settings
from service.db import Database
from service.redis.client import create_redis
from service.usage.flusher import UsageFlusher


async def test_an_outage_is_logged_once_however_many_cycles_fail(
    caplog: pytest.LogCaptureFixture,
) -> None:
    errors: list[None] = []
    # Nothing listens on port 1: every Redis call is refused at once, no server needed. The
    # database is never reached while Redis refuses.
    redis = create_redis(Settings(redis_url="redis://127.0.0.1:1/0"))  # no retries
    flusher = UsageFlusher(
        redis,
        cast(Database, None),
        interval_s=0.01,
        on_flush_error=lambda: errors.append(None),
    )
    with caplog.at_level(logging.INFO, logger="gatekey.usage"):
        for _ in range(5):
            await flusher._cycle()
    await redis.aclose()
    assert len(errors) == 5
    assert [(r.levelname, r.message, r.exc_info) for r in caplog.records] == [
        ("WARNING", "usage_flush_failed", None)
    ]
    assert caplog.records[0].__dict__["error"].startswith("ConnectionError: ")
