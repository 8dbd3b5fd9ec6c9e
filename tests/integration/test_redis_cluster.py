"""gatekey on a real Redis Cluster (three masters, a replica each) over two workers: the limit
exact, usage stored once, a revoke refused within a second, and a master killed under load."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from service.db import Database
from service.owners.service import set_owner_limits
from tests.factories import TEST_ACTOR, create_key, key_header, unique_owner
from tests.integration.failover import (
    assert_answered_throughout,
    assert_exact_again,
    assert_usage_never_doubled,
    load_through_failover,
)
from tests.integration.redis_topologies import SERVE_REDIS_TIMEOUT_S, ClusterRig, redis_cluster
from tests.integration.servers import (
    Clients,
    ServeProcess,
    assert_exact_burst,
    fire,
    wait_for_usage,
)

# The same tests as on one Redis server, run here against the Cluster's `server`.
from tests.integration.test_serve_limits import (
    test_a_revoke_under_load_is_answered_revoked_by_every_worker_within_a_second as test_revoke,
)

pytestmark = pytest.mark.cluster
__all__ = ["test_revoke"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterRig]:
    with redis_cluster(tmp_path_factory.mktemp("cluster")) as rig:
        yield rig


@pytest.fixture(scope="module")
def serve_overrides(cluster: ClusterRig) -> dict[str, object]:
    return {"redis_url": cluster.url, "redis_timeout": SERVE_REDIS_TIMEOUT_S}


async def test_a_burst_admits_exactly_the_limit_and_stores_its_usage_once(
    server: ServeProcess, database: Database
) -> None:
    issued = await create_key(database, server.settings, name="burst", rate_limit="100/hour")
    async with Clients(server.url) as clients:
        outcomes = await fire(
            lambda i: clients[i].get("/v1/whoami", headers=key_header(issued.plaintext)),
            1000,
            concurrency=100,
        )
    assert_exact_burst(outcomes, 100, 3600)
    await wait_for_usage(server, database, issued.record.id, 100)


@pytest.mark.slow
async def test_a_master_killed_under_load_is_covered_by_the_fallback_until_its_replica_serves(
    server: ServeProcess, database: Database, cluster: ClusterRig
) -> None:
    victim = cluster.master_of(f"{server.settings.redis_namespace}:{{usage}}:dirty")
    run = await load_through_failover(server, database, victim.kill, cluster.is_serving)
    assert_answered_throughout(run)
    await assert_usage_never_doubled(server, database, run)
    await assert_exact_again(server, database)


async def test_owner_limits_and_credits_share_one_slot_per_owner(
    server: ServeProcess, database: Database
) -> None:
    """An owned key's counters, usage and credits live under its owner's hash tag, beside the
    owner-wide counter: one script call each request, exact on a Cluster."""
    owner = unique_owner()
    async with database.get_session() as session:
        await set_owner_limits(
            session=session, owner=owner, rate_limits=["50/hour"], actor=TEST_ACTOR
        )
    spender = await create_key(
        database, server.settings, owner=owner, rate_limit="1000/hour", credits=30
    )
    other = await create_key(database, server.settings, owner=owner, rate_limit="1000/hour")
    statuses = [await _burst(server, issued.plaintext) for issued in (spender, other)]
    # 30 credits bind the first key; the owner's 50 leave 20 for the second.
    assert statuses == [{200: 30, 429: 170}, {200: 20, 429: 180}]
    await wait_for_usage(server, database, spender.record.id, 30)


async def _burst(server: ServeProcess, key: str) -> Counter[int | None]:
    async with Clients(server.url) as clients:
        outcomes = await fire(
            lambda i: clients[i].get("/v1/whoami", headers=key_header(key)), 200, concurrency=50
        )
    return Counter(o.status for o in outcomes)
