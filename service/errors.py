"""Domain errors: a stable `code` and a message, no HTTP status (the API and CLI map them)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from service.results import KeyCheckResult

if TYPE_CHECKING:
    # Type-only, and both are plain values that import nothing of the service: errors stay
    # importable from everywhere (config, db) without an import cycle.
    from service.keys.record import KeyRecord
    from service.ratelimit.decision import RateLimitDecision


class GatekeyError(Exception):
    """Base of every error the service raises on purpose."""

    code = "ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(GatekeyError):
    code = "VALIDATION_ERROR"


class NotFound(GatekeyError):
    code = "NOT_FOUND"


class ConflictingCredentials(GatekeyError):
    """A request carries two different keys; which one is meant cannot be told."""

    code = "CONFLICTING_CREDENTIALS"


class TooManyFailures(GatekeyError):
    """A client address spent its budget of failed verifications; `retry_after_s` says when the
    next attempt is heard."""

    code = "TOO_MANY_FAILED_VERIFICATIONS"

    def __init__(self, retry_after_s: float) -> None:
        super().__init__("too many failed key verifications from this address; retry later")
        self.retry_after_s = retry_after_s


class DatabaseUnavailable(GatekeyError):
    """The database did not answer, or no pooled connection freed up in time."""

    code = "DATABASE_UNAVAILABLE"


class KeyRejected(GatekeyError):
    """A presented key failed the check; `code` says how."""

    code: KeyCheckResult

    def __init__(self, code: KeyCheckResult, message: str) -> None:
        super().__init__(message)
        self.code = code


class Forbidden(KeyRejected):
    def __init__(self, message: str) -> None:
        super().__init__(KeyCheckResult.FORBIDDEN, message)


class MissingScopes(Forbidden):
    """A valid key without a scope the request needs; carries the key and the unit of its limit
    the request spent (bodies and RateLimit headers)."""

    def __init__(self, record: KeyRecord, decision: RateLimitDecision, missing: str) -> None:
        super().__init__(f"this key lacks the scope(s) {missing}")
        self.record = record
        self.decision = decision


class RateLimited(KeyRejected):
    """The key is valid but over its limit; carries the decision for the response headers."""

    def __init__(self, record: KeyRecord, decision: RateLimitDecision) -> None:
        super().__init__(KeyCheckResult.RATE_LIMITED, f"rate limit of {decision.limit} exceeded")
        self.record = record
        self.decision = decision


class UsageExceeded(RateLimited):
    """The key is valid but its credits are spent: answered like a rate limit (429), with its
    own code; `Retry-After` only when a refill is due."""

    def __init__(self, record: KeyRecord, decision: RateLimitDecision) -> None:
        KeyRejected.__init__(self, KeyCheckResult.USAGE_EXCEEDED, "the key's credits are spent")
        self.record = record
        self.decision = decision


class LimiterUnavailable(KeyRejected):
    """Redis is down and `RATE_LIMIT_ON_REDIS_ERROR=deny`."""

    def __init__(self) -> None:
        super().__init__(KeyCheckResult.RATE_LIMITER_UNAVAILABLE, "the rate limiter is unavailable")
