"""Looking at a deployment while it works: metrics and database connections, sampled over time."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from service.selftest.prom import Scrape

REQUESTS = "gatekey_http_requests_total"
RSS = "gatekey_worker_resident_memory_bytes"
CPU = "gatekey_worker_cpu_seconds"
POOL_CHECKED_OUT = "gatekey_db_pool_checked_out"
POOL_WAITS = "gatekey_db_pool_wait_seconds_count"
POOL_TIMEOUTS = "gatekey_db_pool_timeouts_total"

SAMPLE_INTERVAL_S = 0.25


@dataclass(frozen=True, slots=True)
class DbActivity:
    """The service's connections in `pg_stat_activity` (application_name `gatekey`)."""

    connections: int
    idle_in_transaction: int


@dataclass(frozen=True, slots=True)
class Sample:
    """One look at the deployment, `t_s` seconds into the self-test."""

    t_s: float
    requests: float
    rss_bytes: dict[str, float]
    cpu_seconds: dict[str, float]
    pool_checked_out: float
    pool_waits: float
    pool_timeouts: float
    responses_503: float
    responses_5xx: float
    db: DbActivity
    # The counters the exhaustion and error checks read were in the scrape: without them a 0 is
    # "not measured", not "none happened".
    has_counters: bool = True


def sample_from(scrape: Scrape, *, t_s: float, db: DbActivity) -> Sample:
    return Sample(
        t_s=t_s,
        requests=scrape.total(REQUESTS),
        rss_bytes=scrape.by_label(RSS, "pid"),
        cpu_seconds=scrape.by_label(CPU, "pid"),
        pool_checked_out=scrape.total(POOL_CHECKED_OUT),
        pool_waits=scrape.total(POOL_WAITS),
        pool_timeouts=scrape.total(POOL_TIMEOUTS),
        responses_503=scrape.total(REQUESTS, status="503"),
        responses_5xx=scrape.total_where(REQUESTS, "status", is_server_error),
        db=db,
        has_counters={REQUESTS, POOL_TIMEOUTS} <= scrape.names(),
    )


def is_server_error(status: str) -> bool:
    return len(status) == 3 and status.startswith("5")


class Sampler:
    """Takes a `Sample` every `SAMPLE_INTERVAL_S` while a load step runs."""

    def __init__(
        self,
        scrape: Callable[[], Awaitable[Scrape]],
        activity: Callable[[], Awaitable[DbActivity]],
        *,
        started_at: float,
    ) -> None:
        self._scrape = scrape
        self._activity = activity
        self._started_at = started_at

    async def sample(self) -> Sample:
        scrape, db = await asyncio.gather(self._scrape(), self._activity())
        return sample_from(scrape, t_s=time.monotonic() - self._started_at, db=db)

    async def sample_until(self, done: asyncio.Event) -> list[Sample]:
        samples = []
        while not done.is_set():
            # A scrape lost to a saturated server is a gap in the series, not a finding.
            with contextlib.suppress(httpx.HTTPError, OSError):
                samples.append(await self.sample())
            try:
                await asyncio.wait_for(done.wait(), SAMPLE_INTERVAL_S)
            except TimeoutError:
                continue
        return samples

    async def settle(self, timeout_s: float) -> Sample:
        """The first sample with no checked-out connection and no idle transaction; when
        `timeout_s` passes first, the quietest one taken (in-flight requests and the workers'
        background reads and flushes hold connections for moments: what is held in every sample
        is what leaked)."""
        deadline = time.monotonic() + timeout_s
        quietest: Sample | None = None
        while True:
            sample = await self.sample()
            held = (sample.pool_checked_out, sample.db.idle_in_transaction)
            if quietest is None or held < (
                quietest.pool_checked_out,
                quietest.db.idle_in_transaction,
            ):
                quietest = sample
            if held == (0, 0) or time.monotonic() >= deadline:
                return quietest
            await asyncio.sleep(SAMPLE_INTERVAL_S)
