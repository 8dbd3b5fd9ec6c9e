"""Recording admin actions (inside the action's own transaction) and reading the log back."""

from __future__ import annotations

import getpass
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from service.audit.repository import AuditRepository
from service.keys.record import KeyRecord

# The fields of a key an entry may show: what an admin sets, never the hash or a plaintext.
AUDITED_FIELDS = (
    "name",
    "owner",
    "scopes",
    "rate_limits",
    "credits_remaining",
    "refill",
    "expires_at",
    "revoked_at",
    "replaced_by_id",
    "metadata",
    "enabled",
)
# What a new key holds when a field is left out: not recorded on create (nothing was set).
_UNSET_ON_CREATE: dict[str, object] = {
    "scopes": (),
    "rate_limits": (),
    "metadata": {},
    "enabled": True,
}
MAX_PAGE = 1000


class AuditAction(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    SET_LIMIT = "set-limit"
    SET_CREDITS = "set-credits"
    REVOKE = "revoke"
    ROTATE = "rotate"
    OWNER_SET_LIMIT = "owner-set-limit"


@dataclass(frozen=True, slots=True)
class AuditRecord:
    id: int
    at: datetime
    action: str
    key_id: uuid.UUID | None  # None for an action on an owner
    actor: str
    changes: dict[str, Any]
    owner: str | None = None  # the owner an owner action targets


def cli_actor() -> str:
    """The actor of a CLI command: `cli:` and the OS user running it."""
    return f"cli:{getpass.getuser()}"


def key_actor(key_id: uuid.UUID) -> str:
    """The actor of an admin API call: the acting key's id."""
    return str(key_id)


def _json(value: object) -> object:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def changes(before: KeyRecord | None, after: KeyRecord) -> dict[str, Any]:
    """The audited fields that differ, `{"from": old, "to": new}`; on create, those set."""
    diff: dict[str, Any] = {}
    for field in AUDITED_FIELDS:
        old = None if before is None else getattr(before, field)
        new = getattr(after, field)
        if old != new and not (before is None and new == _UNSET_ON_CREATE.get(field)):
            diff[field] = {"from": _json(old), "to": _json(new)}
    return diff


async def record_actions(
    session: AsyncSession,
    *,
    action: AuditAction,
    actor: str,
    changed: Sequence[tuple[KeyRecord | None, KeyRecord]],
) -> None:
    """Add one entry per (before, after) pair to the caller's transaction: the entries commit
    with the change or not at all. Every admin action on keys calls this, and only this."""
    rows = [
        {
            "action": str(action),
            "key_id": after.id,
            "actor": actor,
            "changes": changes(before, after),
        }
        for before, after in changed
    ]
    await AuditRepository(session).add_many(rows)


async def record_owner_action(
    session: AsyncSession,
    *,
    action: AuditAction,
    actor: str,
    owner: str,
    changes: dict[str, Any],
) -> None:
    """One entry for an action on an owner, in the caller's transaction."""
    row = {"action": str(action), "owner": owner, "actor": actor, "changes": changes}
    await AuditRepository(session).add_many([row])


async def list_entries(
    *, session: AsyncSession, key_id: uuid.UUID | None, after_id: int | None, limit: int
) -> list[AuditRecord]:
    entries = await AuditRepository(session).page(
        key_id=key_id, after_id=after_id, limit=min(limit, MAX_PAGE)
    )
    return [
        AuditRecord(e.id, e.at, e.action, e.key_id, e.actor, dict(e.changes), e.owner)
        for e in entries
    ]
