"""`create_redis(settings)`: the one way a gatekey process opens a Redis client."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from service.config import Settings

# Shared by the usage flusher, key-change pub/sub and health checks; the limiter keeps its own
# two connections.
REDIS_POOL_SIZE = 8


def client_name(settings: Settings) -> str:
    """What a gatekey process calls itself in Redis's `CLIENT LIST`: one name per namespace, so
    a deployment's connections can be counted on a Redis that others share."""
    return f"gatekey-{settings.redis_namespace}"


def create_redis(settings: Settings, *, timeout: float | None = None) -> Redis:
    """A client on a blocking pool with short timeouts and no retries: fail fast, never hang.

    `timeout` (seconds per connect, call and pool wait) is `REDIS_TIMEOUT` unless the caller is
    off the request path and may wait longer (an admin command, a pre-flight probe).
    """
    seconds = settings.redis_timeout if timeout is None else timeout
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=REDIS_POOL_SIZE,
        timeout=seconds,
        socket_timeout=seconds,
        socket_connect_timeout=seconds,
        retry=Retry(NoBackoff(), 0),
        client_name=client_name(settings),
    )
    return Redis.from_pool(pool)
