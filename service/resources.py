"""Every per-process resource, opened and closed in one place, FastAPI-free: `open_serving` for a
server worker (the app's lifespan calls it), `open_admin` for a CLI command."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

from service.config import RateLimitBackend, RedisErrorPolicy, Settings
from service.db import Database
from service.durations import parse_duration
from service.guard import Guard
from service.keys.directory import KeyDirectory
from service.keys.events import RedisKeyChangePublisher, listen_for_key_changes
from service.keys.feed import KeyChangeFeed
from service.keys.format import KeyFormat
from service.keys.service import read_credit_state
from service.keys.verifier import KeyVerifier
from service.metrics import Metrics, label_incrementer, run_resource_sampler
from service.ratelimit.credits import CreditState
from service.ratelimit.events import LimiterEvents
from service.ratelimit.failures import FailureBudget
from service.ratelimit.limiter import RateLimiter, create_failure_limiter, create_limiter
from service.ratelimit.policy import parse_rate_limit
from service.redis.client import RedisClient, create_redis
from service.redis.keyspace import RedisKeyspace
from service.state import AppState
from service.usage.flusher import UsageFlusher
from service.usage.pruner import UsagePruner
from service.workers.heap import freeze_long_lived

Job = Callable[[asyncio.Event], Coroutine[Any, Any, None]]
# Background jobs get this long after the stop signal (the usage flusher's last flush) before
# they are cancelled.
STOP_GRACE_S = 10.0
# An admin command is off the request path and may run far from Redis: its one announcement
# may wait longer than REDIS_TIMEOUT.
ADMIN_REDIS_TIMEOUT_S = 0.5


@dataclass(frozen=True, slots=True)
class AdminResources:
    """What an admin command needs: the database, the key format and the change announcer."""

    database: Database
    key_format: KeyFormat
    key_events: RedisKeyChangePublisher


@asynccontextmanager
async def open_admin(settings: Settings) -> AsyncIterator[AdminResources]:
    """A short-lived engine and Redis client for one CLI command; no limiter, no background job."""
    async with AsyncExitStack() as stack:
        database = Database(settings, application_name="gatekey-cli")
        stack.push_async_callback(database.dispose)
        redis = create_redis(settings, timeout=ADMIN_REDIS_TIMEOUT_S)
        stack.push_async_callback(redis.aclose)
        keyspace = RedisKeyspace(settings.redis_namespace)
        directory = KeyDirectory(redis, keyspace, timeout=ADMIN_REDIS_TIMEOUT_S)
        yield AdminResources(
            database,
            KeyFormat.from_settings(settings),
            RedisKeyChangePublisher(redis, keyspace, directory),
        )


@asynccontextmanager
async def open_serving(
    settings: Settings, *, worker_count: int, metrics: Metrics
) -> AsyncIterator[AppState]:
    """Open a worker's resources and background jobs, yield them as `AppState`, then stop the
    jobs and close the resources in reverse order."""
    async with AsyncExitStack() as stack:
        database = Database(settings, metrics=metrics)
        stack.push_async_callback(database.dispose)
        redis: RedisClient | None = None
        if settings.rate_limit_backend is RateLimitBackend.REDIS:
            redis = create_redis(settings)
            stack.push_async_callback(redis.aclose)
        keyspace = RedisKeyspace(settings.redis_namespace)
        limiter = create_limiter(
            settings,
            redis=redis,
            worker_count=worker_count,
            on_decision=label_incrementer(metrics.ratelimit_decisions),
            keyspace=keyspace,
            events=LimiterEvents(
                round_trip=metrics.redis_round_trip.observe,
                breaker_open=metrics.ratelimit_breaker_open.set,
                usage_dropped=lambda reason, count: metrics.usage_dropped.labels(reason).inc(count),
            ),
            credit_states=partial(_credit_state, database),
        )
        stack.push_async_callback(limiter.aclose)
        failure_limiter = create_failure_limiter(
            settings, redis=redis, worker_count=worker_count, keyspace=keyspace
        )
        stack.push_async_callback(failure_limiter.aclose)
        failures = FailureBudget(
            failure_limiter, parse_rate_limit(settings.failed_verification_limit)
        )
        key_format = KeyFormat.from_settings(settings)
        directory = KeyDirectory(redis, keyspace, timeout=settings.redis_timeout) if redis else None
        verifier, feed = _verifier_and_feed(settings, database, key_format, directory, metrics)
        jobs: list[Job] = [
            lambda stop: run_resource_sampler(metrics, stop),
            feed.run,
            freeze_long_lived,
        ]
        if redis is not None:
            jobs += _redis_jobs(redis, database, verifier, settings, keyspace, metrics)
        await stack.enter_async_context(_background(jobs))
        yield AppState(
            settings=settings,
            database=database,
            key_format=key_format,
            verifier=verifier,
            limiter=limiter,
            guard=_guard(verifier, limiter, settings, metrics, failures),
            metrics=metrics,
            key_feed=feed,
            key_events=(
                RedisKeyChangePublisher(redis, keyspace, directory) if redis and directory else None
            ),
        )


def _verifier_and_feed(
    settings: Settings,
    database: Database,
    key_format: KeyFormat,
    directory: KeyDirectory | None,
    metrics: Metrics,
) -> tuple[KeyVerifier, KeyChangeFeed]:
    """The verifier trusts its cache and the directory as long as the feed keeps up."""
    feed = KeyChangeFeed(database, directory=directory)
    verifier = KeyVerifier(
        database,
        key_format,
        ttl=settings.key_cache_ttl,
        max_age=settings.key_cache_max_age,
        directory=directory,
        feed=feed,
        on_cache=label_incrementer(metrics.key_cache_requests),
    )
    feed.subscribe(verifier.key_changed)
    return verifier, feed


async def _credit_state(database: Database, key_id: str) -> CreditState | None:
    """A key's credits as PostgreSQL holds them, for the limiter to seed a Redis that lost them."""
    async with database.get_session() as session:
        return await read_credit_state(session=session, key_id=uuid.UUID(key_id))


def _guard(
    verifier: KeyVerifier,
    limiter: RateLimiter,
    settings: Settings,
    metrics: Metrics,
    failures: FailureBudget,
) -> Guard:
    return Guard(
        verifier,
        limiter,
        parse_rate_limit(settings.rate_limit_default),
        on_result=label_incrementer(metrics.key_verifications),
        is_fallback_denial=settings.rate_limit_on_redis_error is RedisErrorPolicy.DENY,
        failures=failures,
        on_near_limit=metrics.ratelimit_near_limit.inc,
    )


def _redis_jobs(
    redis: RedisClient,
    database: Database,
    verifier: KeyVerifier,
    settings: Settings,
    keyspace: RedisKeyspace,
    metrics: Metrics,
) -> list[Job]:
    """The usage flusher and pruner, and the listener that empties the key cache when a key
    changes."""
    flusher = UsageFlusher(
        redis,
        database,
        interval_s=settings.usage_flush_interval,
        keyspace=keyspace,
        on_flush=lambda _keys: metrics.usage_flushes.labels("ok").inc(),
        on_flush_error=lambda: metrics.usage_flushes.labels("error").inc(),
        on_pending=metrics.usage_pending.set,
    )
    pruner = UsagePruner(
        redis,
        database,
        retention=parse_duration(settings.usage_retention),
        keyspace=keyspace,
        on_pruned=metrics.usage_pruned_rows.inc,
    )
    return [
        flusher.run,
        pruner.run,
        lambda stop: listen_for_key_changes(
            redis, keyspace, lambda _key_id: verifier.invalidate(), stop
        ),
    ]


@asynccontextmanager
async def _background(jobs: list[Job]) -> AsyncIterator[None]:
    """Run jobs for the lifetime of the block; on the way out, ask them to stop, then cancel."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(job(stop)) for job in jobs]
    try:
        yield
    finally:
        stop.set()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_S)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
