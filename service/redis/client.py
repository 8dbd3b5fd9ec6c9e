"""`create_redis(settings)`: the one way a gatekey process opens a Redis client, on one server, a
Redis Cluster or the master Sentinel names (`REDIS_URL`, see `url.py`), and `slot_groups`, the
keys one script call may take together there."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.crc import key_slot

from service.config import Settings
from service.redis.url import RedisShape, RedisTarget, parse_redis_url

# Shared by the usage flusher, key-change pub/sub and health checks (per node on a Cluster); the
# limiter keeps its own connections.
REDIS_POOL_SIZE = 8
# A Cluster call may meet a MOVED answer after a failover and follow it: one retry, with the
# slot map read again; the callers' own deadlines still bound it.
CLUSTER_RETRIES = 1

RedisClient = Redis | RedisCluster


def client_name(settings: Settings) -> str:
    """What a gatekey process calls itself in Redis's `CLIENT LIST`: one name per namespace, so
    a deployment's connections can be counted on a Redis that others share."""
    return f"gatekey-{settings.redis_namespace}"


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's master discovery on a pool that waits (up to its timeout) for a free
    connection, as the single-server pool does, rather than failing at once when all are busy."""

    async def disconnect(self, inuse_connections: bool = True) -> None:
        """A full disconnect (the client's `aclose`) closes the connections to the sentinels
        too, which redis-py leaves open; a master change (`inuse_connections=False`) does not."""
        await super().disconnect(inuse_connections)
        if inuse_connections:
            for sentinel in self.sentinel_manager.sentinels:
                await sentinel.aclose()


def create_redis(settings: Settings, *, timeout: float | None = None) -> RedisClient:
    """A client with short timeouts and no retries: fail fast, never hang.

    `timeout` (seconds per connect, call and pool wait) is `REDIS_TIMEOUT` unless the caller is
    off the request path and may wait longer (an admin command, a pre-flight probe).
    """
    seconds = settings.redis_timeout if timeout is None else timeout
    target = parse_redis_url(settings.redis_url)
    # Every connection (to a server, a Cluster node or a sentinel) gets these.
    timeouts: dict[str, Any] = {
        "socket_timeout": seconds,
        "socket_connect_timeout": seconds,
        "client_name": client_name(settings),
    }
    if target.shape is RedisShape.CLUSTER:
        return _cluster(target, timeouts)
    if target.shape is RedisShape.SENTINEL:
        return _sentinel_master(target, timeouts, pool_timeout=seconds)
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=REDIS_POOL_SIZE,
        timeout=seconds,
        retry=Retry(NoBackoff(), 0),
        **timeouts,
    )
    return Redis.from_pool(pool)


def _cluster(target: RedisTarget, timeouts: dict[str, Any]) -> RedisCluster:
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
        username=target.username,
        password=target.password,
        ssl=target.is_tls,
        max_connections=REDIS_POOL_SIZE,
        retry=Retry(NoBackoff(), CLUSTER_RETRIES),
        **timeouts,
    )


def _sentinel_master(
    target: RedisTarget, timeouts: dict[str, Any], *, pool_timeout: float
) -> Redis:
    """The master's client: every new connection asks the sentinels where the master is now, and
    a connection to a master demoted by a failover drops on its first READONLY answer."""
    sentinel = Sentinel(  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
        list(target.nodes), sentinel_kwargs=dict(timeouts), **timeouts
    )
    client: Redis = sentinel.master_for(
        target.master_name,
        connection_pool_class=_BlockingSentinelPool,
        db=target.db,
        username=target.username,
        password=target.password,
        ssl=target.is_tls,
        max_connections=REDIS_POOL_SIZE,
        timeout=pool_timeout,
        retry=Retry(NoBackoff(), 0),
    )
    return client


def slot_groups(redis: RedisClient, keys: Sequence[str]) -> list[list[int]]:
    """Indices of `keys` in groups one script call may take together: all of them on one
    server, those sharing a hash slot on a Cluster (a script's keys must sit in one slot)."""
    if not isinstance(redis, RedisCluster):
        return [list(range(len(keys)))] if keys else []
    groups: dict[int, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(key_slot(key.encode()), []).append(index)
    return list(groups.values())
