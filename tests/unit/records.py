"""`key_record`: a `KeyRecord` for unit tests, every field set, those a test needs given."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from service.keys.record import KeyRecord

_BASE = KeyRecord(
    id=uuid.UUID(int=1),
    name="ci",
    display_prefix="gk_abcdefgh",
    owner=None,
    scopes=(),
    rate_limits=(),
    owner_rate_limits=(),
    created_at=datetime(2026, 1, 1, tzinfo=UTC),
    expires_at=None,
    revoked_at=None,
    last_used_at=None,
    replaced_by_id=None,
    created_by=None,
    metadata={},
    enabled=True,
    credits_remaining=None,
    refill=None,
    credits_refilled_at=None,
    credits_epoch=0,
)


def key_record(**fields: Any) -> KeyRecord:
    """An active key with no limits, credits or metadata of its own, but for `fields`."""
    return replace(_BASE, **fields)
