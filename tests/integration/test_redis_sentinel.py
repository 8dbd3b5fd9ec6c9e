"""gatekey on a master found through Redis Sentinel (one replica, three sentinels) over two
workers: the limit exact, usage stored once, and the master killed under load."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from service.db import Database
from tests.integration.failover import (
    assert_answered_throughout,
    assert_exact_again,
    assert_usage_never_doubled,
    load_through_failover,
)
from tests.integration.redis_topologies import SERVE_REDIS_TIMEOUT_S, SentinelRig, redis_sentinel
from tests.integration.servers import ServeProcess

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelRig]:
    with redis_sentinel(tmp_path_factory.mktemp("sentinel")) as rig:
        yield rig


@pytest.fixture(scope="module")
def serve_overrides(sentinel: SentinelRig) -> dict[str, object]:
    return {"redis_url": sentinel.url, "redis_timeout": SERVE_REDIS_TIMEOUT_S}


async def test_exact_before_the_failover(server: ServeProcess, database: Database) -> None:
    await assert_exact_again(server, database)


@pytest.mark.slow
async def test_a_master_killed_under_load_is_covered_by_the_fallback_until_the_replica_serves(
    server: ServeProcess, database: Database, sentinel: SentinelRig
) -> None:
    run = await load_through_failover(
        server, database, sentinel.master.kill, sentinel.has_failed_over
    )
    assert_answered_throughout(run)
    await assert_usage_never_doubled(server, database, run)
    await assert_exact_again(server, database)
