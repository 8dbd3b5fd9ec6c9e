"""`selftest --soak`: one load level held while each worker's memory and descriptors, PostgreSQL
connections and Redis clients are sampled; a worker that keeps memory per request is NO-GO."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.config import Settings
from service.selftest import fixes
from service.selftest.model import Outcome, Verdict
from service.selftest.report_html import render_html
from service.selftest.runner import Options, run_selftest
from service.selftest.soak import SOAK_CHECK
from tests.integration.selftest_support import Quiet, checks_of, variant

# Each runs a real self-test: minutes in all, so `make test-selftest` runs them (CI too).
pytestmark = pytest.mark.selftest


async def test_memory_kept_per_request_fails_the_soak(
    stack_settings: Settings, tmp_path: Path
) -> None:
    """32 KiB kept from every request: RSS climbs far beyond 1 MB per 10 minutes."""
    async with variant(stack_settings, "hoarding_app", tmp_path) as url:
        options = Options(url=url, only=frozenset({SOAK_CHECK}), soak_s=60.0)
        report = await run_selftest(stack_settings, options, Quiet())
    soak = checks_of(report)[SOAK_CHECK]
    assert soak.result is Outcome.FAIL, soak.figures
    assert "rss_mb@" in str(soak.figures["growing"])
    assert float(soak.figures["rss_mb_per_10min"]) > 10
    assert soak.fix == fixes.MEMORY_LEAK
    assert report.verdict is Verdict.NO_GO
    series = {sample.series for sample in report.soak}
    assert series == {"rss_mb", "open_fds", "pg_connections", "redis_clients"}
    assert len({sample.t_s for sample in report.soak}) >= 4
    page = render_html(report)
    for title in ("resident memory", "open file descriptors", "PostgreSQL connections and Redis"):
        assert f"Soak: {title}" in page
