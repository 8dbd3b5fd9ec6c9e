"""`FailureBudget`: failed key verifications per client address, counted by a rate limiter; an
address over its budget is refused in-process, without any I/O, until its retry time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from service.errors import TooManyFailures
from service.ratelimit.policy import RateLimitPolicy
from service.results import KeyCheckResult

if TYPE_CHECKING:
    from service.ratelimit.limiter import RateLimiter

# Unknown keys only: each may cost a directory read and a query, and guessing is the attack. A
# malformed key is refused before any I/O and can never succeed; a revoked or expired key is a
# real key, cached like a valid one, and a stale client retrying it is no attacker.
COUNTED = frozenset({KeyCheckResult.NOT_FOUND})
MAX_BLOCKED = 100_000


class FailureBudget:
    """`check` before a verification, `spend` after a failed one (raises past the budget)."""

    def __init__(
        self,
        limiter: RateLimiter,
        policy: RateLimitPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_blocked: int = MAX_BLOCKED,
    ) -> None:
        self._limiter = limiter
        self._policy = policy
        self._clock = clock
        self._max_blocked = max_blocked
        # address -> monotonic time its next attempt is heard; read on every request, so a
        # blocked address costs no Redis call and no database query.
        self._blocked: dict[str, float] = {}

    def check(self, client: str) -> None:
        until = self._blocked.get(client)
        if until is None:
            return
        left = until - self._clock()
        if left > 0:
            raise TooManyFailures(left)
        del self._blocked[client]

    async def spend(self, client: str, result: KeyCheckResult) -> None:
        """Count one failed verification of `client`; raise `TooManyFailures` past the budget."""
        if result not in COUNTED:
            return
        decision = await self._limiter.hit(f"client:{client}", self._policy)
        if decision.allowed:
            return
        if len(self._blocked) >= self._max_blocked:
            # Each entry is at most one retry interval old; dropping them all only costs each
            # blocked address one more Redis round trip before it is blocked again.
            self._blocked.clear()
        self._blocked[client] = self._clock() + decision.retry_after_s
        raise TooManyFailures(decision.retry_after_s)
