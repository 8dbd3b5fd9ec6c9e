"""`/v1/admin/keys`: the CLI's key operations over HTTP, for keys with scope `admin`."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Query

from service.api.deps import AdminDep, SessionDep, StateDep
from service.durations import parse_duration
from service.keys import service
from service.keys.schemas import KeyCreate, KeyIssued, KeyOut, KeyRotate, KeyUpdate
from service.keys.service import IssuedKey

router = APIRouter(prefix="/v1/admin/keys", tags=["admin"])


def _issued(issued: IssuedKey) -> KeyIssued:
    return KeyIssued.of(issued.record, key=issued.plaintext)


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
    """Create a key; the response holds its plaintext, shown this once."""
    issued = await service.create_key(
        session=session,
        key_format=state.key_format,
        name=body.name,
        owner=body.owner,
        scopes=body.scopes,
        rate_limit=body.rate_limit,
        expires_in=parse_duration(body.expires_in) if body.expires_in else None,
        listener=state.key_events,
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
    """Change name, owner, scopes or rate limit."""
    record = await service.update_key(
        session=session,
        key_id=key_id,
        name=body.name,
        owner=body.owner,
        scopes=body.scopes,
        rate_limit=body.rate_limit,
        listener=state.key_events,
    )
    return KeyOut.of(record)


@router.delete("/{key_id}")
async def revoke_key(
    key_id: uuid.UUID, admin: AdminDep, session: SessionDep, state: StateDep
) -> KeyOut:
    """Revoke a key at once."""
    record = await service.revoke_key(session=session, key_id=key_id, listener=state.key_events)
    return KeyOut.of(record)


@router.post("/{key_id}/rotate", status_code=201)
async def rotate_key(
    key_id: uuid.UUID,
    admin: AdminDep,
    session: SessionDep,
    state: StateDep,
    body: KeyRotate | None = None,
) -> KeyIssued:
    """Issue a successor; the old key works until the grace period ends."""
    grace = parse_duration(body.grace if body else "0s")
    issued = await service.rotate_key(
        session=session,
        key_format=state.key_format,
        key_id=key_id,
        grace=grace,
        listener=state.key_events,
    )
    return _issued(issued)
