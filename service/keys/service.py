"""Key use cases shared by the CLI and the admin API: each write commits before it returns."""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from service.audit.service import AuditAction, record_actions
from service.errors import InvalidInput, NotFound
from service.keys.directory import KeyEntry
from service.keys.events import KeyChangeListener
from service.keys.format import KeyFormat
from service.keys.listing import DEFAULT_PAGE, KeyCursor, KeyState, check_limit
from service.keys.metadata import clean_metadata
from service.keys.models import ApiKey
from service.keys.record import KeyRecord
from service.keys.repository import ApiKeyRepository
from service.keys.scopes import check_scope
from service.ratelimit.credits import CreditState, check_credits, parse_refill
from service.ratelimit.policy import canonical_rate_limits
from service.results import KeyCheckResult

# New keys reach the Redis directory this many at a time (one pipeline each).
_ANNOUNCE_BATCH = 1000
# More keys in one call than any import or load test needs; bounds the memory of one transaction.
MAX_BULK_KEYS = 1_000_000


class Keep(Enum):
    """A field argument meaning "leave it as it is", where `None` is a value of its own (a key
    that never expires)."""

    KEEP = "keep"


KEEP = Keep.KEEP


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A freshly generated key: the only moment its plaintext exists."""

    record: KeyRecord
    plaintext: str


def _utcnow() -> datetime:
    return datetime.now(UTC)


# Control (Cc: newline, NUL, DEL...), format (Cf: bidi overrides, zero-width), separator (Zl, Zp),
# surrogate, private-use and unassigned code points: they break headers, logs and terminals, or
# make two names look alike. Everything else of Unicode is allowed (`акме`, `ёжик`, `株式会社`).
_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _check_printable(field: str, value: str) -> str:
    for char in value:
        if unicodedata.category(char) in _UNPRINTABLE:
            raise InvalidInput(
                f"{field} must be printable text: U+{ord(char):04X} "
                f"({unicodedata.category(char)}) is not allowed"
            )
    return value


def _clean_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidInput("name must be 1 to 200 characters")
    return _check_printable("name", name)


def _clean_owner(owner: str | None) -> str | None:
    if owner is not None and len(owner) > 200:
        raise InvalidInput("owner must be at most 200 characters")
    return _check_printable("owner", owner) if owner else None


def _clean_scopes(scopes: list[str]) -> list[str]:
    return sorted({check_scope(scope) for scope in scopes})


def _clean_rate_limits(rate_limits: Sequence[str] | None) -> list[str]:
    return canonical_rate_limits(rate_limits or ())


def _credit_fields(
    credits: int | None, refill: str | None, *, has_credits: bool, epoch: int
) -> dict[str, object]:
    """The columns that set credits (`credits`: the count starts again at it, at a new epoch)
    and their refill; a refill needs credits, given now or before."""
    fields: dict[str, object] = {}
    if refill is not None:
        if credits is None and not has_credits:
            raise InvalidInput("refill: the key has no credits: give credits too")
        fields["refill"] = str(parse_refill(refill))
    if credits is not None:
        fields["credits_remaining"] = check_credits(credits)
        fields["credits_epoch"] = epoch + 1
        fields["credits_refilled_at"] = _utcnow()
    return fields


def _clean_expires_at(expires_at: datetime | None) -> datetime | None:
    """In UTC, as every stored time is read back: the answer to the update says what a later
    read says."""
    if expires_at is None:
        return None
    if expires_at.utcoffset() is None:
        raise InvalidInput("expires_at must name its time zone, e.g. 2030-01-01T00:00:00Z")
    return expires_at.astimezone(UTC)


async def _get_model(repository: ApiKeyRepository, key_id: uuid.UUID) -> ApiKey:
    key = await repository.get(key_id, for_update=True)
    if key is None:
        raise NotFound(f"no key with id {key_id}")
    return key


def _entry(model: ApiKey) -> KeyEntry:
    return KeyEntry(model.key_hash, model.version, KeyRecord.of(model))


@dataclass(frozen=True, slots=True)
class Audit:
    """What the audit entry of a change says besides the change: the action and who acted."""

    action: AuditAction
    actor: str


async def _commit_change(
    session: AsyncSession,
    model: ApiKey,
    before: KeyRecord,
    audit: Audit,
    listener: KeyChangeListener | None,
) -> KeyRecord:
    """Commit a change to an existing key with its audit entry, then tell every worker's cache."""
    await session.flush()  # the database moves `version`; RETURNING brings it back
    entry = _entry(model)
    await record_actions(
        session, action=audit.action, actor=audit.actor, changed=[(before, entry.record)]
    )
    await session.commit()
    if listener is not None:
        await listener.key_changed(entry)
    return entry.record


async def create_key(
    *,
    session: AsyncSession,
    key_format: KeyFormat,
    name: str,
    owner: str | None = None,
    scopes: list[str] | None = None,
    rate_limits: Sequence[str] | None = None,
    expires_in: timedelta | None = None,
    metadata: dict[str, Any] | None = None,
    credits: int | None = None,
    refill: str | None = None,
    listener: KeyChangeListener | None = None,
    actor: str,
) -> IssuedKey:
    (issued,) = await create_keys(
        session=session,
        actor=actor,
        key_format=key_format,
        count=1,
        name=name,
        owner=owner,
        scopes=scopes,
        rate_limits=rate_limits,
        expires_in=expires_in,
        metadata=metadata,
        credits=credits,
        refill=refill,
        listener=listener,
    )
    return issued


async def create_keys(
    *,
    session: AsyncSession,
    key_format: KeyFormat,
    count: int,
    name: str,
    owner: str | None = None,
    scopes: list[str] | None = None,
    rate_limits: Sequence[str] | None = None,
    expires_in: timedelta | None = None,
    metadata: dict[str, Any] | None = None,
    credits: int | None = None,
    refill: str | None = None,
    listener: KeyChangeListener | None = None,
    actor: str,
) -> list[IssuedKey]:
    """`count` keys with the same metadata in one transaction (one for `create_key`, thousands
    for imports and load tests): one multi-row INSERT per 1,000 keys, not a round trip each."""
    if not 1 <= count <= MAX_BULK_KEYS:
        raise InvalidInput(f"count must be 1 to {MAX_BULK_KEYS:,}")
    shared = {
        "name": _clean_name(name),
        "owner": _clean_owner(owner),
        "scopes": _clean_scopes(scopes or []),
        "rate_limits": _clean_rate_limits(rate_limits),
        "expires_at": _utcnow() + expires_in if expires_in is not None else None,
        "created_by": actor,
        "metadata": clean_metadata({} if metadata is None else metadata),
        **_credit_fields(credits, refill, has_credits=False, epoch=0),
    }
    plaintexts = [key_format.generate() for _ in range(count)]
    rows = [
        {
            **shared,
            "key_hash": key_format.hash(plaintext),
            "display_prefix": key_format.display_prefix(plaintext),
        }
        for plaintext in plaintexts
    ]
    stored = await ApiKeyRepository(session).add_many(rows)
    entries = [KeyEntry(row.key_hash, row.version, KeyRecord.of(row)) for row in stored]
    await record_actions(
        session,
        action=AuditAction.CREATE,
        actor=actor,
        changed=[(None, entry.record) for entry in entries],
    )
    await session.commit()
    if listener is not None:
        for start in range(0, len(entries), _ANNOUNCE_BATCH):
            await listener.keys_created(entries[start : start + _ANNOUNCE_BATCH])
    return [
        IssuedKey(record=entry.record, plaintext=plaintext)
        for entry, plaintext in zip(entries, plaintexts, strict=True)
    ]


@dataclass(frozen=True, slots=True)
class KeyPage:
    """One page of a listing; `next_cursor` resumes after its last key, None on the last page."""

    keys: list[KeyRecord]
    next_cursor: str | None


async def list_keys(
    *,
    session: AsyncSession,
    owner: str | None = None,
    name_prefix: str | None = None,
    state: KeyState = KeyState.ACTIVE,
    after: KeyCursor | None = None,
    limit: int = DEFAULT_PAGE,
) -> KeyPage:
    """A page of keys in creation order. One key more than the page is read, so the last page
    says it is the last (no empty page after a full one)."""
    models = await ApiKeyRepository(session).page(
        owner=owner,
        name_prefix=name_prefix,
        state=state,
        after=after,
        limit=check_limit(limit) + 1,
        now=_utcnow(),
    )
    records = [KeyRecord.of(model) for model in models[:limit]]
    more = len(models) > limit
    last = records[-1] if more else None
    return KeyPage(
        keys=records,
        next_cursor=None if last is None else KeyCursor(last.created_at, last.id).encode(),
    )


async def get_key(*, session: AsyncSession, key_id: uuid.UUID) -> KeyRecord:
    model = await ApiKeyRepository(session).get(key_id)
    if model is None:
        raise NotFound(f"no key with id {key_id}")
    return KeyRecord.of(model)


async def update_key(
    *,
    session: AsyncSession,
    key_id: uuid.UUID,
    name: str | None = None,
    owner: str | None = None,
    scopes: list[str] | None = None,
    rate_limits: Sequence[str] | None = None,
    credits: int | None = None,
    refill: str | None = None,
    metadata: dict[str, Any] | None = None,
    enabled: bool | None = None,
    expires_at: datetime | Keep | None = KEEP,
    listener: KeyChangeListener | None = None,
    actor: str,
    action: AuditAction = AuditAction.UPDATE,
) -> KeyRecord:
    """Change the given fields; `None` leaves a field as it is, but `expires_at`, where `None`
    means "never expires" and `KEEP` leaves it (an empty `rate_limits` restores the default
    policy). `metadata` replaces the whole object. `action` names the change in the audit log
    (`set-limit` for the CLI command of that name)."""
    model = await _get_model(ApiKeyRepository(session), key_id)
    before = KeyRecord.of(model)
    if metadata is not None:
        model.key_metadata = clean_metadata(metadata)
    if enabled is not None:
        model.enabled = enabled
    if not isinstance(expires_at, Keep):
        model.expires_at = _clean_expires_at(expires_at)
    if name is not None:
        model.name = _clean_name(name)
    if owner is not None:
        model.owner = _clean_owner(owner)
    if scopes is not None:
        model.scopes = _clean_scopes(scopes)
    if rate_limits is not None:
        model.rate_limits = _clean_rate_limits(rate_limits)
    has_credits = model.credits_remaining is not None
    for field, value in _credit_fields(
        credits, refill, has_credits=has_credits, epoch=model.credits_epoch
    ).items():
        setattr(model, field, value)
    return await _commit_change(session, model, before, Audit(action, actor), listener)


async def revoke_key(
    *,
    session: AsyncSession,
    key_id: uuid.UUID,
    listener: KeyChangeListener | None = None,
    actor: str,
) -> KeyRecord:
    """Revoke now; revoking twice keeps the first time."""
    model = await _get_model(ApiKeyRepository(session), key_id)
    before = KeyRecord.of(model)
    now = _utcnow()
    if model.revoked_at is None or model.revoked_at > now:
        model.revoked_at = now
    return await _commit_change(session, model, before, Audit(AuditAction.REVOKE, actor), listener)


async def rotate_key(
    *,
    session: AsyncSession,
    key_format: KeyFormat,
    key_id: uuid.UUID,
    grace: timedelta,
    listener: KeyChangeListener | None = None,
    actor: str,
) -> IssuedKey:
    """Issue a successor with the same metadata; the old key is revoked when the grace ends."""
    repository = ApiKeyRepository(session)
    old = await _get_model(repository, key_id)
    before = KeyRecord.of(old)
    now = _utcnow()
    status = before.status(now)
    if status is not KeyCheckResult.VALID:
        raise InvalidInput(f"key {key_id} is {status.lower()} and cannot be rotated")
    plaintext = key_format.generate()
    new = await repository.add(
        ApiKey(
            key_hash=key_format.hash(plaintext),
            display_prefix=key_format.display_prefix(plaintext),
            name=old.name,
            owner=old.owner,
            scopes=list(old.scopes),
            rate_limits=list(old.rate_limits),
            expires_at=old.expires_at,
            key_metadata=old.key_metadata,
            created_by=actor,
        )
    )
    old.revoked_at = now + grace
    old.replaced_by_id = new.id
    new_entry = _entry(new)
    await _commit_change(session, old, before, Audit(AuditAction.ROTATE, actor), listener)
    if listener is not None:
        await listener.keys_created([new_entry])
    return IssuedKey(record=new_entry.record, plaintext=plaintext)


async def read_credit_state(*, session: AsyncSession, key_id: uuid.UUID) -> CreditState | None:
    """The key's credits as last persisted (None: it has none, or is gone)."""
    model = await ApiKeyRepository(session).get(key_id)
    if model is None or model.credits_remaining is None:
        return None
    refilled = model.credits_refilled_at
    return CreditState(
        model.credits_remaining,
        model.credits_epoch,
        int(refilled.timestamp()) if refilled is not None else 0,
    )
