"""`/v1/admin/keys`: the CLI's key operations over HTTP, for keys with scope `admin`.

A key that carries an admin scope is minted, granted or rotated here only by a key that also
holds `admin:grant`: a leaked `admin` key alone cannot breed admin keys.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Annotated

from fastapi import APIRouter, Query

from service.api.deps import AdminDep, SessionDep, StateDep
from service.audit.service import key_actor
from service.durations import parse_duration
from service.errors import MissingScopes
from service.guard import Admission
from service.keys import service
from service.keys.listing import (
    DEFAULT_PAGE,
    MAX_CURSOR_LENGTH,
    MAX_PAGE,
    KeyCursor,
    KeyState,
    listing_state,
)
from service.keys.schemas import (
    KeyCreate,
    KeyIssued,
    KeyList,
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
    owner: Annotated[
        str | None, Query(max_length=200, description="only this owner's keys")
    ] = None,
    name_prefix: Annotated[
        str | None, Query(max_length=200, description="names starting with this, as typed")
    ] = None,
    state: Annotated[KeyState | None, Query(description="default `active`")] = None,
    include_inactive: Annotated[
        bool, Query(alias="all", description="`state=all` by its older name")
    ] = False,
    cursor: Annotated[
        str | None,
        Query(max_length=MAX_CURSOR_LENGTH, description="`next_cursor` of the previous page"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
) -> KeyList:
    """Keys in creation order, a page at a time; active ones unless `state` says otherwise."""
    page = await service.list_keys(
        session=session,
        owner=owner,
        name_prefix=name_prefix,
        state=listing_state(state, include_inactive=include_inactive),
        after=None if cursor is None else KeyCursor.decode(cursor),
        limit=limit,
    )
    return KeyList(keys=[KeyOut.of(record) for record in page.keys], next_cursor=page.next_cursor)


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
        metadata=body.metadata,
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
    """Change name, owner, scopes, rate limits, credits, metadata, expiry or enabled (admin
    scopes need `admin:grant`). A field left out stays as it is; `"expires_at": null` removes
    the expiry."""
    _require_grant(admin, body.scopes or ())
    # Merge-patch (RFC 7396): only a field sent is changed, and null there clears the expiry.
    expires_at = body.expires_at if "expires_at" in body.model_fields_set else service.KEEP
    record = await service.update_key(
        session=session,
        key_id=key_id,
        name=body.name,
        owner=body.owner,
        scopes=body.scopes,
        rate_limits=requested_limits(body.rate_limits, body.rate_limit),
        credits=body.credits,
        refill=body.refill,
        metadata=body.metadata,
        enabled=body.enabled,
        expires_at=expires_at,
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
