"""Owner-limit use cases shared by the CLI and the admin API: each write commits before it
returns, with its audit entry, then tells every worker about the owner's keys."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from service.audit.service import AuditAction, record_owner_action
from service.errors import InvalidInput
from service.keys.directory import KeyEntry
from service.keys.events import KeyChangeListener
from service.keys.record import KeyRecord
from service.keys.repository import ApiKeyRepository
from service.owners.repository import OwnerLimitsRepository
from service.ratelimit.policy import canonical_rate_limits


@dataclass(frozen=True, slots=True)
class OwnerLimitsRecord:
    """An owner's limits (canonical texts; empty: none)."""

    owner: str
    rate_limits: tuple[str, ...]


def _clean_owner(owner: str) -> str:
    if not 1 <= len(owner) <= 200 or not owner.isprintable():
        raise InvalidInput("owner must be 1 to 200 printable characters")
    return owner


async def set_owner_limits(
    *,
    session: AsyncSession,
    owner: str,
    rate_limits: Sequence[str],
    listener: KeyChangeListener | None = None,
    actor: str,
) -> OwnerLimitsRecord:
    """Replace the owner's limits (none: remove them). The table's trigger copies them onto
    every key of the owner in the same transaction, which moves each key's version: the
    key-change feed carries them to every worker within a second even unannounced."""
    owner = _clean_owner(owner)
    limits = canonical_rate_limits(rate_limits)
    repository = OwnerLimitsRepository(session)
    before = await repository.get(owner, for_update=True)
    old = list(before.rate_limits) if before is not None else []
    if limits:
        await repository.put(owner, limits)
    elif before is not None:
        await repository.delete(owner)
    if old != limits:
        await record_owner_action(
            session,
            action=AuditAction.OWNER_SET_LIMIT,
            actor=actor,
            owner=owner,
            changes={"rate_limits": {"from": old, "to": limits}},
        )
    # Active keys only: no cache serves the others.
    keys = await ApiKeyRepository(session).active_of_owner(owner, now=datetime.now(UTC))
    entries = [KeyEntry(key.key_hash, key.version, KeyRecord.of(key)) for key in keys]
    await session.commit()
    if listener is not None and old != limits:
        for entry in entries:
            await listener.key_changed(entry)
    return OwnerLimitsRecord(owner, tuple(limits))


async def get_owner_limits(*, session: AsyncSession, owner: str) -> OwnerLimitsRecord:
    """The owner's limits (empty when it has none)."""
    row = await OwnerLimitsRepository(session).get(_clean_owner(owner))
    return OwnerLimitsRecord(owner, tuple(row.rate_limits) if row else ())


async def list_owner_limits(*, session: AsyncSession) -> list[OwnerLimitsRecord]:
    """Every owner with limits, by name."""
    rows = await OwnerLimitsRepository(session).list()
    return [OwnerLimitsRecord(row.owner, tuple(row.rate_limits)) for row in rows]
