"""`KeyRecord`: a key's fields, declared once; what use cases return and the verifier caches."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, fields
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
    # The owner's own JSON object (plan, tenant...), handed back on every successful check; never
    # mutated once read. Left out of the hash (a dict has none): equal records still hash equal.
    metadata: dict[str, Any] = field(hash=False)
    # False refuses the key (`DISABLED`) until it is enabled again; unlike revocation, reversible.
    enabled: bool
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
        names = _MAPPED_NAMES if hasattr(type(source), "__mapper__") else _NAMES
        values = {name: getattr(source, attribute) for name, attribute in names}
        values["scopes"] = tuple(values["scopes"])
        values["rate_limits"] = tuple(values["rate_limits"])
        values["owner_rate_limits"] = tuple(values["owner_rate_limits"])
        return cls(**values, **extra)

    def status(self, now: datetime) -> KeyCheckResult:
        """`VALID`, `REVOKED`, `EXPIRED` or `DISABLED` at `now`: the first that applies of the
        last three, so a key that enabling would not bring back never answers `DISABLED`."""
        if self.revoked_at is not None and self.revoked_at <= now:
            return KeyCheckResult.REVOKED
        if self.expires_at is not None and self.expires_at <= now:
            return KeyCheckResult.EXPIRED
        if not self.enabled:
            return KeyCheckResult.DISABLED
        return KeyCheckResult.VALID

    def is_active(self, now: datetime) -> bool:
        return self.status(now) is KeyCheckResult.VALID


# Declarative reserves `metadata` on a mapped class: there (and only there: table rows and
# records use the column's name) the attribute is `key_metadata`.
MAPPED_ATTRIBUTES = {"metadata": "key_metadata"}
_NAMES = tuple((each.name, each.name) for each in fields(KeyRecord))
_MAPPED_NAMES = tuple((name, MAPPED_ATTRIBUTES.get(name, name)) for name, _ in _NAMES)
