"""Two `gatekey serve` instances, standing for two hosts (own ports and metric directories), on
one PostgreSQL and one Redis: limits exact across both, revocation seen by both within a second,
usage counted once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from service.config import Settings
from service.db import Database
from tests.factories import assert_problem, create_key, key_header, revoke_key
from tests.integration.servers import (
    Clients,
    ServeProcess,
    assert_exact_burst,
    fire,
    fire_until,
    serve_settings,
    serving,
    wait_for_usage,
)

pytestmark = pytest.mark.slow

WHOAMI = "/v1/whoami"
HOUR = 3600
LIMIT = 100
BURST = 1000


@pytest.fixture(scope="module")
def hosts(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServeProcess, ServeProcess]]:
    """Two one-worker servers with the same settings (database, Redis and its namespace)."""
    shared = serve_settings(settings)
    with (
        serving(shared, tmp_path_factory.mktemp("host_a"), workers=1) as host_a,
        serving(shared, tmp_path_factory.mktemp("host_b"), workers=1) as host_b,
    ):
        assert host_a.metrics_dir != host_b.metrics_dir
        yield host_a, host_b


async def test_a_burst_over_both_hosts_admits_exactly_the_limit_and_counts_it_once(
    hosts: tuple[ServeProcess, ServeProcess], database: Database
) -> None:
    host_a, host_b = hosts
    issued = await create_key(
        database, host_a.settings, name="two hosts", rate_limit=f"{LIMIT}/hour"
    )
    headers = key_header(issued.plaintext)
    async with (
        Clients(host_a.url, connections=25) as on_a,
        Clients(host_b.url, connections=25) as on_b,
    ):
        outcomes = await fire(
            lambda i: (on_a if i % 2 else on_b)[i // 2].get(WHOAMI, headers=headers),
            BURST,
            concurrency=50,
        )
    assert_exact_burst(outcomes, LIMIT, HOUR)
    admitted_by = [str(o.response.url) for o in outcomes if o.response and o.status == 200]
    by_host = {url: sum(u.startswith(url) for u in admitted_by) for url in (host_a.url, host_b.url)}
    assert all(count > 0 for count in by_host.values()), by_host
    # Both hosts' flushers write the key's usage; the table holds each request once.
    await wait_for_usage(host_a, database, issued.record.id, LIMIT)


async def test_a_revoke_is_refused_by_both_hosts_within_a_second(
    hosts: tuple[ServeProcess, ServeProcess], database: Database
) -> None:
    issued = await create_key(database, hosts[0].settings, name="revoked on two hosts")
    headers = key_header(issued.plaintext)
    stop = asyncio.Event()
    async with (
        Clients(hosts[0].url, connections=10) as on_a,
        Clients(hosts[1].url, connections=10) as on_b,
    ):
        load = asyncio.create_task(
            fire_until(
                lambda i: (on_a if i % 2 else on_b)[i // 2].get(WHOAMI, headers=headers),
                stop,
                concurrency=20,
            )
        )
        await asyncio.sleep(0.5)
        # In SQL, announced nowhere: each host's key-change feed alone must see it.
        await revoke_key(database, issued.record.id)
        revoked = time.monotonic()
        await asyncio.sleep(1.5)
        stop.set()
        outcomes = await load
    assert [o.error for o in outcomes if o.error is not None] == []
    late = [o for o in outcomes if o.started_at >= revoked + 1.0]
    for url in (hosts[0].url, hosts[1].url):
        on_host = [o for o in late if o.response and str(o.response.url).startswith(url)]
        assert len(on_host) >= 5, url
        for outcome in on_host:
            assert outcome.response is not None
            assert_problem(outcome.response, 401, "REVOKED")
