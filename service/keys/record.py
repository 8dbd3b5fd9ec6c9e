"""`KeyRecord`: the immutable view of a key that use cases return and the cache holds."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from service.keys.models import ApiKey
from service.results import KeyCheckResult


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: uuid.UUID
    name: str
    display_prefix: str
    owner: str | None
    scopes: tuple[str, ...]
    rate_limit: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    replaced_by_id: uuid.UUID | None

    @classmethod
    def from_model(cls, key: ApiKey) -> KeyRecord:
        return cls(
            id=key.id,
            name=key.name,
            display_prefix=key.display_prefix,
            owner=key.owner,
            scopes=tuple(key.scopes),
            rate_limit=key.rate_limit,
            created_at=key.created_at,
            expires_at=key.expires_at,
            revoked_at=key.revoked_at,
            last_used_at=key.last_used_at,
            replaced_by_id=key.replaced_by_id,
        )

    def status(self, now: datetime) -> KeyCheckResult:
        """`VALID`, `REVOKED` or `EXPIRED` at `now` (revocation wins when both apply)."""
        if self.revoked_at is not None and self.revoked_at <= now:
            return KeyCheckResult.REVOKED
        if self.expires_at is not None and self.expires_at <= now:
            return KeyCheckResult.EXPIRED
        return KeyCheckResult.VALID

    def is_active(self, now: datetime) -> bool:
        return self.status(now) is KeyCheckResult.VALID
