"""Redis limiter: one atomic GCRA script per hit, a process's concurrent hits pipelined together
(on a Redis Cluster, one pipeline per node the hits' keys live on)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, cast

import hiredis
from redis.asyncio import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, ResponseError

from service.batching import drain_tasks
from service.ratelimit.breaker import CircuitBreaker
from service.ratelimit.cluster_upkeep import ClusterUpkeep
from service.ratelimit.credit_seed import CreditSeeder, CreditStates
from service.ratelimit.credits import Credits
from service.ratelimit.deadline import Deadline
from service.ratelimit.decision import RateLimitDecision
from service.ratelimit.deferred_usage import DeferredUsage
from service.ratelimit.events import LimiterEvents
from service.ratelimit.gcra import NEVER, to_decision
from service.ratelimit.limits import Limit, LimitSet, single
from service.ratelimit.policy import RateLimitPolicy
from service.redis.client import RedisClient
from service.redis.keyspace import RedisKeyspace, usage_ref
from service.redis.scripts import ScriptName, load_script

logger = logging.getLogger("gatekey.ratelimit")

USAGE_TTL_S = 2 * 86400
# key id, its limits, the cost, its owner -> the decision made without Redis
Fallback = Callable[[str, LimitSet, int, str | None], RateLimitDecision]


@dataclass(frozen=True, slots=True)
class _Unanswered:
    """Redis gave no answer for a hit, which is decided without it. `maybe_ran`: the script was
    sent, so Redis may have counted the hit (or will, once a paused Redis resumes)."""

    maybe_ran: bool


_NOT_SENT = _Unanswered(maybe_ran=False)
_SENT = _Unanswered(maybe_ran=True)
_Reply = list[int] | _Unanswered  # the script's seven numbers, or why there are none


@dataclass(frozen=True, slots=True)
class _Call:
    key_id: str
    owner: str | None
    ref: str  # what names the key's Redis state (`usage_ref`)
    limits: LimitSet
    cost: int
    credits: Credits | None
    future: asyncio.Future[_Reply]


# The script's status: refused by a limit, admitted, refused for want of credits, no credits
# state (seeded from PostgreSQL, then asked again, at most this many times in all).
_DECISIONS = ("limited", "allowed", "usage_exceeded")
_USAGE_EXCEEDED = 2
_NO_CREDITS_STATE = 3
_SEED_TRIES = 3
# Keys whose script KEYS are kept ready (about 300 bytes each).
_MAX_CACHED_KEYS = 50_000


class _BatchFailed(Exception):
    """`replies`: on a Cluster where only some nodes failed, every hit's reply or why it has
    none; otherwise None, and `maybe_ran` says for them all."""

    def __init__(self, *, maybe_ran: bool, replies: list[_Reply] | None = None) -> None:
        super().__init__("maybe ran" if maybe_ran else "not sent")
        self.maybe_ran = maybe_ran
        self.replies = replies


def _pack(*args: str | int | bytes) -> bytes:
    # hiredis packs in C (~1.4 us against ~11 us for redis-py's Python packer); its stub
    # declares a one-element tuple, hence the cast.
    return cast(bytes, hiredis.pack_command(cast(Any, args)))


class RedisRateLimiter:
    """Exact limits shared by every process and host; falls back while Redis is unreachable.

    Hits arriving in the same event-loop tick go out as one pipeline of EVALSHAs (each still
    atomic, each resolving its own future): the per-round-trip cost of redis-py is paid once per
    batch. Batches run on the limiter's own connections, without per-read timeouts, because one
    deadline bounds the whole round trip.
    """

    def __init__(
        self,
        redis: RedisClient,
        *,
        timeout: float,
        breaker: CircuitBreaker,
        fallback: Fallback,
        on_decision: Callable[[str], None] | None = None,
        keyspace: RedisKeyspace | None = None,
        max_in_flight: int = 2,
        observe: Callable[[str, int], None] | None = None,
        deferred_usage: DeferredUsage | None = None,
        records_usage: bool = True,
        events: LimiterEvents | None = None,
        credit_states: CreditStates | None = None,
    ) -> None:
        self._redis = redis
        # False for limits on something other than a key (no usage hash, no dirty mark).
        self._records_usage = records_usage
        self._usage_ttl_s = USAGE_TTL_S if records_usage else 0
        self._events = events or LimiterEvents()
        self._keyspace = keyspace or RedisKeyspace()
        # Where lost credits come back from (PostgreSQL); None: a limiter of no key's credits.
        self._seeder = CreditSeeder(redis, self._keyspace, credit_states) if credit_states else None
        # A connect plus a round trip, each allowed `timeout`: about as long as a call waits on
        # a hung Redis (see Deadline for why a busy loop does not shorten it).
        self._deadline_s = 2 * timeout
        self._breaker = breaker
        self._fallback = fallback
        self._on_decision = on_decision or _ignore
        # Told each key's time-until-full, so a local fallback starts from Redis's count.
        self._observe = observe
        # Counts what a fallback admits, for Redis to take over once it answers again.
        self._deferred_usage = deferred_usage
        self._hand_over: asyncio.Task[None] | None = None
        self._max_in_flight = max_in_flight
        script = load_script(ScriptName.GCRA)
        self._script = script.body
        self._sha = script.sha1.encode()
        self._pending: list[_Call] = []
        self._keys_of: dict[tuple[str, int, bool], tuple[LimitSet, tuple[str, ...]]] = {}
        self._is_batch_starting = False
        self._in_flight = 0
        self._idle: dict[str, list[AbstractConnection]] = {}  # by node name on a Cluster
        self._tasks: set[asyncio.Task[None]] = set()
        # One server (or Sentinel's master): new connections like the client's. A Cluster: per
        # master, from its node (`_execute_on_cluster`).
        self._cluster: ClusterUpkeep | None = None
        self._new_connection: Callable[[], AbstractConnection] | None = None
        if isinstance(redis, RedisCluster):
            self._cluster = ClusterUpkeep(
                redis, self._keyspace, deadline_s=self._deadline_s, spawn=self._background
            )
        else:
            pool = redis.connection_pool
            self._new_connection = _connection_factory(
                pool.connection_class, pool.connection_kwargs
            )

    async def hit(
        self,
        key_id: str,
        limits: LimitSet | RateLimitPolicy,
        *,
        cost: int = 1,
        owner: str | None = None,
        credits: Credits | None = None,
    ) -> RateLimitDecision:
        """Check one request of `cost` units against every limit in `limits` and the key's
        `credits` at once. Credits Redis has lost (a restart, a flush) are seeded from
        PostgreSQL and the check asked again: the rare path, never the hot one."""
        if isinstance(limits, RateLimitPolicy):
            limits = single(limits)
        ref = usage_ref(key_id, owner)
        loop = asyncio.get_running_loop()
        for _ in range(_SEED_TRIES):
            call = _Call(key_id, owner, ref, limits, cost, credits, loop.create_future())
            if not self._breaker.allow():
                return self._fall_back(call, _NOT_SENT)
            self._pending.append(call)
            if not self._is_batch_starting and self._in_flight < self._max_in_flight:
                self._start_batch()
            reply = await call.future
            if isinstance(reply, _Unanswered):
                return self._fall_back(call, reply)
            if reply[0] != _NO_CREDITS_STATE:
                return self._decide(call, reply)
            try:
                has_credits = self._seeder is not None and await self._seeder.seed(key_id, ref)
            except Exception as error:  # Redis or PostgreSQL failed: decided as without Redis
                logger.warning("ratelimit_credit_seed_failed", extra={"error": repr(error)})
                return self._fall_back(call, _NOT_SENT)
            credits = credits if has_credits else None
        # Seeded, and gone again each time: refused rather than credits invented.
        return to_decision(limits.params[0], False, 0, 0, NEVER, usage_exceeded=True)

    def _decide(self, call: _Call, reply: list[int]) -> RateLimitDecision:
        status, binding, remaining, reset_us, retry_after_us, shadow_refused, left = reply
        limits = call.limits
        self._on_decision(_DECISIONS[status])
        if shadow_refused:
            self._on_decision("shadow_limited")
        limit = limits.limits[binding - 1]
        if self._observe is not None and status != _USAGE_EXCEEDED:
            self._observe(limit.subject(call.key_id, call.owner), reset_us)
        return to_decision(
            limits.params[binding - 1],
            status == 1,
            remaining,
            reset_us,
            retry_after_us,
            name=limit.name,
            policy_header=limits.policy_header,
            shadow_limited=shadow_refused == 1,
            usage_exceeded=status == _USAGE_EXCEEDED,
            credits_remaining=None if call.credits is None else left,
        )

    async def health(self) -> str:
        """`degraded` while the breaker is open, or when Redis does not answer a PING now: a
        worker that has had no traffic since Redis went away has not met the failure yet."""
        if self._breaker.state != "closed":
            return "degraded"
        try:
            async with asyncio.timeout(self._deadline_s):
                await self._redis.ping()
        except Exception:  # whatever the failure, this worker cannot reach Redis now
            return "degraded"
        return "ok"

    async def aclose(self) -> None:
        await drain_tasks(self._tasks)  # a finishing batch may start the next one
        if self._deferred_usage is not None and not self._deferred_usage.is_empty:
            # A last try; what Redis does not take now is lost with the process.
            with contextlib.suppress(Exception):
                await self._deferred_usage.hand_over()
            if not self._deferred_usage.is_empty:
                lost = self._deferred_usage.held()
                self._events.usage_dropped("shutdown", lost)
                logger.warning("ratelimit_deferred_usage_lost", extra={"requests": lost})
        if self._cluster is not None and self._cluster.unmarked:
            logger.warning("ratelimit_usage_unmarked", extra={"keys": self._cluster.unmarked})
        idle, self._idle = self._idle, {}
        for connection in (c for connections in idle.values() for c in connections):
            await connection.disconnect()

    def _fall_back(self, call: _Call, unanswered: _Unanswered) -> RateLimitDecision:
        """Decided without Redis: limits by the fallback, credits not at all."""
        self._on_decision("fallback")
        key_id, owner, cost = call.key_id, call.owner, call.cost
        decision = self._fallback(key_id, call.limits, cost, owner)
        # A hit whose script may have run is not counted again here: at most once, not twice.
        deferred = self._deferred_usage
        if decision.allowed and cost > 0 and not unanswered.maybe_ran and deferred is not None:
            deferred.add(call.ref)
        return decision

    def _start_hand_over(self) -> None:
        """After a batch Redis answered: pass the usage counted without it back, in the
        background (one hand-over at a time; a failed one is retried after the next success)."""
        deferred = self._deferred_usage
        if deferred is None or deferred.is_empty:
            return
        if self._hand_over is not None and not self._hand_over.done():
            return

        async def hand_over() -> None:
            try:
                await deferred.hand_over()
            except Exception as error:
                logger.warning("ratelimit_deferred_usage_retry", extra={"error": repr(error)})

        self._hand_over = self._background(hand_over())

    def _start_batch(self) -> None:
        # The task's first step runs on the next loop iteration, after every hit queued in this
        # one: that is what gathers a tick's hits into one batch.
        self._is_batch_starting = True
        self._in_flight += 1
        self._background(self._run_batch())

    async def _run_batch(self) -> None:
        self._is_batch_starting = False
        batch, self._pending = self._pending, []
        if not batch:  # a failed batch already answered the hits queued for this one
            self._in_flight -= 1
            return
        replies: Sequence[_Reply]
        started = time.perf_counter()
        try:
            replies = await self._execute(batch)
        except Exception as error:  # whatever broke, these hits are decided without Redis
            if self._breaker.record_failure():
                self._events.breaker_open(True)
                cause = error.__cause__ if isinstance(error, _BatchFailed) else error
                logger.warning("ratelimit_redis_unavailable", extra={"error": repr(cause)})
            # Hits queued behind this batch would only wait for the same failure.
            sent = _SENT if not isinstance(error, _BatchFailed) or error.maybe_ran else _NOT_SENT
            known = error.replies if isinstance(error, _BatchFailed) else None
            replies = (known or [sent] * len(batch)) + [_NOT_SENT] * len(self._pending)
            batch += self._pending
            self._pending = []
        else:
            self._events.round_trip(time.perf_counter() - started)
            if self._breaker.record_success():
                self._events.breaker_open(False)
                logger.info("ratelimit_redis_recovered")
            self._start_hand_over()
        finally:
            self._in_flight -= 1
        for call, reply in zip(batch, replies, strict=True):
            if not call.future.done():  # a caller cancelled while waiting
                call.future.set_result(reply)
        if self._pending and not self._is_batch_starting:
            self._start_batch()

    async def _execute(self, batch: list[_Call]) -> list[_Reply]:
        if self._new_connection is not None:
            return await self._execute_on(
                "", self._new_connection, batch, mark_dirty=self._records_usage
            )
        return await self._execute_on_cluster(batch)

    async def _execute_on_cluster(self, batch: list[_Call]) -> list[_Reply]:
        """One pipeline per master holding some of the hits' keys, all at once; the dirty set
        is marked after the scripts answered, and a failure has the slot map read again."""
        upkeep = self._cluster
        assert upkeep is not None  # only called for a Cluster
        try:
            groups = await upkeep.group_by_master([call.ref for call in batch])
        except Exception as error:
            upkeep.refresh_slots()
            raise _BatchFailed(maybe_ran=False) from error
        outcomes = await asyncio.gather(
            *(
                self._execute_on(
                    node.name,
                    _connection_factory(node.connection_class, node.connection_kwargs),
                    [batch[i] for i in indices],
                    mark_dirty=False,
                )
                for node, indices in groups
            ),
            return_exceptions=True,
        )
        replies: list[_Reply] = [_NOT_SENT] * len(batch)
        failures = []
        for (_, indices), outcome in zip(groups, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                failures.append(outcome)
                maybe_ran = not isinstance(outcome, _BatchFailed) or outcome.maybe_ran
                outcome = [_SENT if maybe_ran else _NOT_SENT] * len(indices)
            for i, reply in zip(indices, outcome, strict=True):
                replies[i] = reply
        if self._records_usage:
            upkeep.mark_dirty(
                call.ref
                for call, reply in zip(batch, replies, strict=True)
                if not isinstance(reply, _Unanswered) or reply.maybe_ran
            )
        if failures:
            upkeep.refresh_slots()
            raise _BatchFailed(maybe_ran=True, replies=replies) from failures[0]
        return replies

    def _background(self, job: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _execute_on(
        self,
        node: str,
        new_connection: Callable[[], AbstractConnection],
        batch: list[_Call],
        *,
        mark_dirty: bool,
    ) -> list[_Reply]:
        idle = self._idle.setdefault(node, [])
        connection = idle.pop() if idle else new_connection()
        is_sent = False
        try:
            with Deadline(self._deadline_s) as deadline:
                if not connection.is_connected:
                    await connection.connect()  # type: ignore[no-untyped-call]  # redis-py
                is_sent = True  # from here on, Redis may run the scripts whatever happens next
                replies = await self._round_trip(
                    connection, deadline, b"EVALSHA", self._sha, batch, mark_dirty=mark_dirty
                )
                missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
                if missing:
                    # SCRIPT FLUSH or a restarted Redis: EVAL runs the script and caches it again.
                    again = [batch[i] for i in missing]
                    retried = await self._round_trip(
                        connection, deadline, b"EVAL", self._script, again, mark_dirty=mark_dirty
                    )
                    for i, reply in zip(missing, retried, strict=True):
                        replies[i] = reply
        except BaseException as error:
            # The connection may still owe replies: never reuse it as it is.
            await connection.disconnect(nowait=True)
            if isinstance(error, Exception):
                raise _BatchFailed(maybe_ran=is_sent) from error
            raise
        finally:
            idle.append(connection)
        for reply in replies:
            if isinstance(reply, ResponseError):  # OOM, BUSY, READONLY...: Redis is not usable
                raise reply
        return replies

    def _script_keys(self, call: _Call) -> tuple[str, ...]:
        """The script's KEYS for `call`: built once per key, limit set and credits, since every
        request of a key asks the same (the names cost more to format than to send). The cached
        entry holds its limit set, so the set's id cannot be reused while it is cached."""
        cache_key = (call.ref, id(call.limits), call.credits is not None)
        cached = self._keys_of.get(cache_key)
        if cached is not None and cached[0] is call.limits:
            return cached[1]
        keyspace = self._keyspace
        keys = (
            keyspace.usage(call.ref),
            *(_tat(keyspace, call, limit) for limit in call.limits.limits),
            *_credit_keys(keyspace, call),
        )
        if len(self._keys_of) >= _MAX_CACHED_KEYS:
            self._keys_of.clear()
        self._keys_of[cache_key] = (call.limits, keys)
        return keys

    async def _round_trip(
        self,
        connection: AbstractConnection,
        deadline: Deadline,
        verb: bytes,
        script: bytes,
        calls: list[_Call],
        *,
        mark_dirty: bool,
    ) -> list[Any]:
        keyspace = self._keyspace
        commands = [
            _pack(
                verb,
                script,
                len(keys := self._script_keys(call)),
                *keys,
                call.cost,
                self._usage_ttl_s,
                *_credit_args(call.credits),
                *call.limits.script_args,
            )
            for call in calls
        ]
        # After the scripts, never before: a flusher claiming the dirty set in between either
        # read the new counts already or finds the key marked again.
        if mark_dirty:
            refs = dict.fromkeys(call.ref for call in calls)
            commands.append(_pack(b"SADD", keyspace.dirty, *refs))
        await connection.send_packed_command(b"".join(commands), check_health=False)
        replies: list[Any] = []
        for _ in calls:
            try:
                replies.append(await connection.read_response())
            except ResponseError as error:
                replies.append(error)
            deadline.progress()
        if mark_dirty:
            await connection.read_response()
        return replies


_NO_CREDITS = (-1, 0, 0, 0)


def _credit_keys(keyspace: RedisKeyspace, call: _Call) -> tuple[str, ...]:
    return () if call.credits is None else (keyspace.credits(call.ref),)


def _credit_args(credits: Credits | None) -> tuple[int, ...]:
    if credits is None:
        return _NO_CREDITS
    return (credits.epoch, credits.initial, credits.refill_amount, credits.period_s)


def _tat(keyspace: RedisKeyspace, call: _Call, limit: Limit) -> str:
    if limit.owner_wide and call.owner is not None:
        return keyspace.owner_tat(call.owner, limit.suffix)
    return keyspace.tat(call.ref, limit.suffix)


def _connection_factory(
    connection_class: type[AbstractConnection], kwargs: dict[str, Any]
) -> Callable[[], AbstractConnection]:
    """New connections like the client's, but without per-read timeouts or retries: the
    limiter's deadline bounds a whole round trip."""
    own = {**kwargs, "socket_timeout": None, "retry": Retry(NoBackoff(), 0)}
    return lambda: connection_class(**own)


def _ignore(decision: str) -> None:
    del decision
