"""The check every key-taking endpoint makes: verify the key, then spend `cost` units of every
one of its limits at once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from service.errors import (
    KeyRejected,
    LimiterUnavailable,
    MissingScopes,
    RateLimited,
    UsageExceeded,
)
from service.keys.record import KeyRecord
from service.keys.verifier import KeyVerifier
from service.ratelimit.credits import credits_of
from service.ratelimit.decision import RateLimitDecision
from service.ratelimit.failures import FailureBudget
from service.ratelimit.limiter import RateLimiter
from service.ratelimit.limits import LimitSet, limit_set
from service.ratelimit.policy import RateLimitPolicy, parse_rate_limits
from service.results import KeyCheckResult

# Distinct limit sets a worker keeps parsed; past it, the table starts again.
_MAX_LIMIT_SETS = 4096


@dataclass(frozen=True, slots=True)
class Admission:
    record: KeyRecord
    decision: RateLimitDecision


class Guard:
    """Verification then limiting; each outcome is reported once through `on_result`."""

    def __init__(
        self,
        verifier: KeyVerifier,
        limiter: RateLimiter,
        default_policy: RateLimitPolicy,
        on_result: Callable[[KeyCheckResult], None],
        *,
        is_fallback_denial: bool = False,
        failures: FailureBudget | None = None,
        on_near_limit: Callable[[], None] | None = None,
    ) -> None:
        self._verifier = verifier
        self._limiter = limiter
        self._default_policy = default_policy
        self._on_result = on_result
        # RATE_LIMIT_ON_REDIS_ERROR=deny: a refusal made without Redis means "unavailable".
        self._is_fallback_denial = is_fallback_denial
        self._limit_sets: dict[tuple[tuple[str, ...], tuple[str, ...]], LimitSet] = {}
        self._failures = failures
        self._on_near_limit = on_near_limit

    def limits_for(self, record: KeyRecord) -> LimitSet:
        """The key's limits (the default policy when it enforces none of its own), cached by
        their texts: parsed once per distinct set, not per request."""
        # A key without an owner has no owner-wide limits (the column stays empty then).
        texts = (record.rate_limits, record.owner_rate_limits if record.owner else ())
        limits = self._limit_sets.get(texts)
        if limits is None:
            if len(self._limit_sets) >= _MAX_LIMIT_SETS:
                self._limit_sets.clear()
            own, owner_wide = (parse_rate_limits(t) for t in texts)
            limits = limit_set(own, owner_wide, default=self._default_policy)
            self._limit_sets[texts] = limits
        return limits

    def limits_in_force(self, record: KeyRecord) -> tuple[str, ...]:
        """The texts of the key's own limits its requests are checked against (the default
        policy's included; the owner's are the record's `owner_rate_limits`)."""
        limits = self.limits_for(record).limits
        return tuple(str(limit.policy) for limit in limits if not limit.owner_wide)

    async def admit(
        self,
        key: str,
        required_scopes: frozenset[str] = frozenset(),
        *,
        client: str | None = None,
        report_valid: bool = True,
        cost: int = 1,
    ) -> Admission:
        """Return the admission, or raise `KeyRejected` (`RateLimited` when over a limit,
        `UsageExceeded` when its credits are spent,
        `MissingScopes` when the key lacks one of `required_scopes`); `TooManyFailures` when
        `client` has failed too often (then nothing is looked up).

        A forbidden request spends its unit of the limit like any other: the key is known and
        the request was made, so a key probing routes it may not use is limited like one using
        them, and the 403 carries true RateLimit headers. `report_valid=False` leaves reporting
        an admission to the caller (`report`), which may still refuse it. `cost`: the units the
        request spends of every limit (0: only report them)."""
        failures = self._failures if client is not None else None
        if failures is not None and client is not None:
            failures.check(client)
        try:
            record = await self._verifier.verify(key)
        except KeyRejected as rejection:
            self._on_result(rejection.code)
            if failures is not None and client is not None:
                await failures.spend(client, rejection.code)
            raise
        decision = await self._limiter.hit(
            str(record.id),
            self.limits_for(record),
            cost=cost,
            owner=record.owner,
            credits=credits_of(record.credits_remaining, record.refill, record.credits_epoch),
        )
        if decision.usage_exceeded:
            self._on_result(KeyCheckResult.USAGE_EXCEEDED)
            raise UsageExceeded(record, decision)
        if not decision.allowed:
            if decision.is_fallback and self._is_fallback_denial:
                self._on_result(KeyCheckResult.RATE_LIMITER_UNAVAILABLE)
                raise LimiterUnavailable
            self._on_result(KeyCheckResult.RATE_LIMITED)
            raise RateLimited(record, decision)
        if self._on_near_limit is not None and decision.is_near_limit and cost > 0:
            self._on_near_limit()
        if required_scopes and not required_scopes.issubset(record.scopes):
            self._on_result(KeyCheckResult.FORBIDDEN)
            missing = ", ".join(sorted(required_scopes.difference(record.scopes)))
            raise MissingScopes(record, decision, missing)
        if report_valid:
            self._on_result(KeyCheckResult.VALID)
        return Admission(record, decision)

    def report(self, result: KeyCheckResult) -> None:
        """Report the end of an admission made with `report_valid=False`."""
        self._on_result(result)
