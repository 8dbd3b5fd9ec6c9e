"""`KeyCheckResult`: the codes a key check ends in, spelled once for bodies, metrics and reports."""

from __future__ import annotations

from enum import StrEnum


class KeyCheckResult(StrEnum):
    """The key-check results of the HTTP contract. Members are `str`, so they serialize, label
    and compare exactly as the plain codes; each value is part of the API, never change one."""

    VALID = "VALID"
    MALFORMED = "MALFORMED"
    NOT_FOUND = "NOT_FOUND"
    REVOKED = "REVOKED"
    EXPIRED = "EXPIRED"
    DISABLED = "DISABLED"
    RATE_LIMITED = "RATE_LIMITED"
    # The key's credits are spent (until its next refill, if it has one).
    USAGE_EXCEEDED = "USAGE_EXCEEDED"
    FORBIDDEN = "FORBIDDEN"
    RATE_LIMITER_UNAVAILABLE = "RATE_LIMITER_UNAVAILABLE"
    # Answered before the guard runs (no key to check), hence never counted as a verification.
    MISSING_KEY = "MISSING_KEY"
