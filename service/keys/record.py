"""`KeyRecord`: a key's fields, declared once; what use cases return and the verifier caches."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Self

from service.results import KeyCheckResult


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """Every field of a key but its hash; immutable and hashable (the fast path keys its cached
    bodies by record), and a slotted dataclass because it is built on every cache miss and held
    by the thousand.

    The API's `KeyOut` and `KeyIssued` are this class under their own names and `of` reads the
    table's row by field name, so a new column is one field here plus the table's own (with its
    migration); `tests/unit/test_key_record.py` fails while the two disagree.
    """

    id: uuid.UUID
    name: str
    display_prefix: str
    owner: str | None
    scopes: tuple[str, ...]
    # Canonical limit texts (`10/second`, `1000/day shadow`); empty: the default policy.
    rate_limits: tuple[str, ...]
    # The owner's limits (`gatekey owners set-limit`), shared by all the owner's keys.
    owner_rate_limits: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    replaced_by_id: uuid.UUID | None
    # Who minted it (an acting key's id, or `cli:` and the OS user); keys older than the audit
    # log have none.
    created_by: str | None
    # Units left as last persisted (lags Redis's live count by up to one usage flush); None: the
    # key has no credits. `refill` (`N/period`) sets them back to N at each period boundary.
    credits_remaining: int | None
    refill: str | None
    credits_refilled_at: datetime | None  # the period start of the last refill, as persisted
    credits_epoch: int

    @classmethod
    def of(cls, source: object, **extra: Any) -> Self:
        """Every field read by name off `source` (an `ApiKey` row, or a record being re-typed as
        an API body), plus `extra` for a subclass's own fields."""
        values = {name: getattr(source, name) for name in _FIELD_NAMES}
        values["scopes"] = tuple(values["scopes"])
        values["rate_limits"] = tuple(values["rate_limits"])
        values["owner_rate_limits"] = tuple(values["owner_rate_limits"])
        return cls(**values, **extra)

    def status(self, now: datetime) -> KeyCheckResult:
        """`VALID`, `REVOKED` or `EXPIRED` at `now` (revocation wins when both apply)."""
        if self.revoked_at is not None and self.revoked_at <= now:
            return KeyCheckResult.REVOKED
        if self.expires_at is not None and self.expires_at <= now:
            return KeyCheckResult.EXPIRED
        return KeyCheckResult.VALID

    def is_active(self, now: datetime) -> bool:
        return self.status(now) is KeyCheckResult.VALID


_FIELD_NAMES = tuple(field.name for field in fields(KeyRecord))
