"""`/v1/admin/keys`: the CLI's key operations over HTTP, for keys with scope `admin`.

A key that carries an admin scope is minted, granted or rotated here only by a key that also
holds `admin:grant`: a leaked `admin` key alone cannot breed admin keys.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from fastapi import APIRouter, Query

from service.api.deps import AdminDep, SessionDep, StateDep
from service.audit.service import key_actor
from service.durations import parse_duration
from service.errors import MissingScopes
from service.guard import Admission
from service.keys import service
from service.keys.schemas import (
    KeyCreate,
    KeyIssued,
    KeyOut,
    KeyRotate,
    KeyUpdate,
    requested_limits,
)
from service.keys.scopes import ADMIN_GRANT, grants_admin
from service.keys.service import IssuedKey

router = APIRouter(prefix="/v1/admin/keys", tags=["admin"])


def _issued(issued: IssuedKey) -> KeyIssued:
    return KeyIssued.of(issued.record, key=issued.plaintext)


def _require_grant(admin: Admission, scopes: Iterable[str]) -> None:
    """Refuse (403 FORBIDDEN, counted as such) a grant of admin scopes without `admin:grant`."""
    if grants_admin(scopes) and ADMIN_GRANT not in admin.record.scopes:
        raise MissingScopes(admin.record, admin.decision, ADMIN_GRANT)


@router.get("")
async def list_keys(
    admin: AdminDep,
    session: SessionDep,
    owner: str | None = None,
    include_inactive: bool = Query(False, alias="all"),
) -> list[KeyOut]:
    """Active keys; `?all=true` adds revoked and expired ones."""
    records = await service.list_keys(
        session=session, owner=owner, include_inactive=include_inactive
    )
    return [KeyOut.of(record) for record in records]


@router.post("", status_code=201)
async def create_key(
    body: KeyCreate, admin: AdminDep, session: SessionDep, state: StateDep
) -> KeyIssued:
    """Create a key; the response holds its plaintext, shown this once. A key with scope
    `admin` or `admin:grant` needs a caller holding `admin:grant`."""
    _require_grant(admin, body.scopes)
    issued = await service.create_key(
        session=session,
        key_format=state.key_format,
        name=body.name,
        owner=body.owner,
        scopes=body.scopes,
        rate_limits=requested_limits(body.rate_limits, body.rate_limit),
        credits=body.credits,
        refill=body.refill,
        expires_in=parse_duration(body.expires_in) if body.expires_in else None,
        listener=state.key_events,
        actor=key_actor(admin.record.id),
    )
    return _issued(issued)


@router.get("/{key_id}")
async def show_key(key_id: uuid.UUID, admin: AdminDep, session: SessionDep) -> KeyOut:
    """One key's metadata."""
    return KeyOut.of(await service.get_key(session=session, key_id=key_id))


@router.patch("/{key_id}")
async def update_key(
    key_id: uuid.UUID, body: KeyUpdate, admin: AdminDep, session: SessionDep, state: StateDep
) -> KeyOut:
    """Change name, owner, scopes, rate limits or credits (admin scopes need `admin:grant`)."""
    _require_grant(admin, body.scopes or ())
    record = await service.update_key(
        session=session,
        key_id=key_id,
        name=body.name,
        owner=body.owner,
        scopes=body.scopes,
        rate_limits=requested_limits(body.rate_limits, body.rate_limit),
        credits=body.credits,
        refill=body.refill,
        listener=state.key_events,
        actor=key_actor(admin.record.id),
    )
    return KeyOut.of(record)


@router.delete("/{key_id}")
async def revoke_key(
    key_id: uuid.UUID, admin: AdminDep, session: SessionDep, state: StateDep
) -> KeyOut:
    """Revoke a key at once."""
    record = await service.revoke_key(
        session=session, key_id=key_id, listener=state.key_events, actor=key_actor(admin.record.id)
    )
    return KeyOut.of(record)


@router.post("/{key_id}/rotate", status_code=201)
async def rotate_key(
    key_id: uuid.UUID,
    admin: AdminDep,
    session: SessionDep,
    state: StateDep,
    body: KeyRotate | None = None,
) -> KeyIssued:
    """Issue a successor; the old key works until the grace period ends. The successor of a key
    with an admin scope is a new admin key: that needs `admin:grant`."""
    grace = parse_duration(body.grace if body else "0s")
    _require_grant(admin, (await service.get_key(session=session, key_id=key_id)).scopes)
    issued = await service.rotate_key(
        session=session,
        key_format=state.key_format,
        key_id=key_id,
        grace=grace,
        listener=state.key_events,
        actor=key_actor(admin.record.id),
    )
    return _issued(issued)
