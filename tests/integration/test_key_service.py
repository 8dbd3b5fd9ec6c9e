"""Key use cases on real PostgreSQL, each test inside a transaction that is rolled back."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.config import Settings
from service.errors import InvalidInput, NotFound
from service.keys import service
from service.keys.format import KeyFormat
from service.keys.listing import KeyState
from service.keys.record import KeyRecord
from service.keys.repository import ApiKeyRepository
from tests.factories import TEST_ACTOR, call_window, columns_containing, unique_owner


@pytest.fixture
def key_format(settings: Settings) -> KeyFormat:
    return KeyFormat.from_settings(settings)


async def _create(
    session: AsyncSession,
    key_format: KeyFormat,
    owner: str,
    *,
    scopes: list[str] | None = None,
    rate_limits: list[str] | None = None,
    expires_in: timedelta | None = None,
) -> service.IssuedKey:
    return await service.create_key(
        actor=TEST_ACTOR,
        session=session,
        key_format=key_format,
        name="svc",
        owner=owner,
        scopes=scopes,
        rate_limits=rate_limits,
        expires_in=expires_in,
    )


async def _stored(session: AsyncSession, key_id: uuid.UUID) -> KeyRecord:
    """The key as its row holds it. The session first forgets the objects it holds, which a query
    would otherwise hand back as they are in memory, so the read proves what was written."""
    session.expire_all()
    return await service.get_key(session=session, key_id=key_id)


async def test_create_stores_hash_and_metadata(
    session: AsyncSession, key_format: KeyFormat
) -> None:
    with call_window() as window:
        issued = await service.create_key(
            actor=TEST_ACTOR,
            session=session,
            key_format=key_format,
            name="  billing job  ",
            owner="team-a",
            scopes=["write", "admin", "write"],
            rate_limits=[" 100 / minutes "],
            expires_in=timedelta(days=30),
        )
    record = issued.record
    assert key_format.is_well_formed(issued.plaintext)
    assert record.name == "billing job"
    assert record.owner == "team-a"
    assert record.scopes == ("admin", "write")
    assert record.rate_limits == ("100/minute",)
    assert record.display_prefix == issued.plaintext[:11]
    assert record.revoked_at is None
    assert record.replaced_by_id is None
    window.assert_stamped(record.expires_at, plus=timedelta(days=30))
    assert await _stored(session, record.id) == record
    stored = await ApiKeyRepository(session).get_by_hash(key_format.hash(issued.plaintext))
    assert stored is not None
    assert stored.id == record.id
    assert stored.key_hash == key_format.hash(issued.plaintext)


async def test_create_rejects_bad_input(session: AsyncSession, key_format: KeyFormat) -> None:
    owner = unique_owner()
    with pytest.raises(InvalidInput, match="invalid rate limit '100/week'"):
        await _create(session, key_format, owner, rate_limits=["100/week"])
    with pytest.raises(InvalidInput, match="invalid scope 'Admin'"):
        await _create(session, key_format, owner, scopes=["Admin"])
    with pytest.raises(InvalidInput, match="name must be 1 to 200 characters"):
        await service.create_key(
            actor=TEST_ACTOR, session=session, key_format=key_format, name="   "
        )
    assert (await service.list_keys(session=session, owner=owner, state=KeyState.ALL)).keys == []


async def test_plaintext_is_in_no_table(session: AsyncSession, key_format: KeyFormat) -> None:
    issued = await _create(session, key_format, unique_owner(), scopes=["admin"])
    connection = await session.connection()
    random_part = issued.plaintext[len(key_format.prefix) + 1 :]
    assert await columns_containing(connection, issued.plaintext) == []
    assert await columns_containing(connection, random_part) == []
    assert await columns_containing(connection, random_part[8:]) == []
    # The scan does find what is stored: the hash, and the display prefix.
    assert await columns_containing(connection, key_format.hash(issued.plaintext)) == [
        "public.api_keys.key_hash"
    ]
    assert "public.api_keys.display_prefix" in await columns_containing(
        connection, issued.record.display_prefix
    )


async def test_list_hides_revoked_and_expired_unless_all(
    session: AsyncSession, key_format: KeyFormat
) -> None:
    owner = unique_owner()
    active = await _create(session, key_format, owner)
    revoked = await _create(session, key_format, owner)
    expired = await _create(session, key_format, owner, expires_in=timedelta(hours=1))
    other_owner = await _create(session, key_format, unique_owner())
    await service.revoke_key(actor=TEST_ACTOR, session=session, key_id=revoked.record.id)
    await session.execute(
        text("UPDATE api_keys SET expires_at = now() - interval '1 minute' WHERE id = :id"),
        {"id": expired.record.id},
    )

    listed = (await service.list_keys(session=session, owner=owner)).keys
    assert [r.id for r in listed] == [active.record.id]
    listed_all = (await service.list_keys(session=session, owner=owner, state=KeyState.ALL)).keys
    assert {r.id for r in listed_all} == {active.record.id, revoked.record.id, expired.record.id}
    for state, key in ((KeyState.REVOKED, revoked), (KeyState.EXPIRED, expired)):
        shown = (await service.list_keys(session=session, owner=owner, state=state)).keys
        assert [r.id for r in shown] == [key.record.id]
    other = (await service.list_keys(session=session, owner=other_owner.record.owner)).keys
    assert [r.id for r in other] == [other_owner.record.id]


async def test_get_unknown_key_is_not_found(session: AsyncSession) -> None:
    missing = uuid.uuid4()
    with pytest.raises(NotFound) as caught:
        await service.get_key(session=session, key_id=missing)
    assert caught.value.code == "NOT_FOUND"
    assert caught.value.message == f"no key with id {missing}"
    for use_case in (service.revoke_key, service.update_key):
        with pytest.raises(NotFound):
            await use_case(session=session, key_id=missing, actor=TEST_ACTOR)


async def test_show_returns_what_create_returned(
    session: AsyncSession, key_format: KeyFormat
) -> None:
    issued = await _create(session, key_format, unique_owner(), scopes=["read"])
    assert await _stored(session, issued.record.id) == issued.record


async def test_revoke_takes_effect_now_and_keeps_the_first_time(
    session: AsyncSession, key_format: KeyFormat
) -> None:
    issued = await _create(session, key_format, unique_owner())
    with call_window() as window:
        first = await service.revoke_key(actor=TEST_ACTOR, session=session, key_id=issued.record.id)
    window.assert_stamped(first.revoked_at, plus=timedelta(0))
    assert first.status(datetime.now(UTC)) == "REVOKED"
    session.expire_all()  # the second revoke starts from the row
    second = await service.revoke_key(actor=TEST_ACTOR, session=session, key_id=issued.record.id)
    assert second.revoked_at == first.revoked_at
    assert (await _stored(session, issued.record.id)).revoked_at == first.revoked_at


async def _rotate(
    session: AsyncSession, key_format: KeyFormat, key_id: uuid.UUID, grace: timedelta
) -> tuple[service.IssuedKey, KeyRecord]:
    issued = await service.rotate_key(
        actor=TEST_ACTOR, session=session, key_format=key_format, key_id=key_id, grace=grace
    )
    return issued, await _stored(session, key_id)


async def test_rotate_with_grace_keeps_old_key_until_grace_ends(
    session: AsyncSession, key_format: KeyFormat
) -> None:
    original = await _create(
        session, key_format, unique_owner(), scopes=["read"], rate_limits=["5/second"]
    )
    with call_window() as window:
        successor, old = await _rotate(session, key_format, original.record.id, timedelta(hours=24))

    assert successor.plaintext != original.plaintext
    assert key_format.is_well_formed(successor.plaintext)
    new = successor.record
    assert (new.name, new.owner, new.scopes, new.rate_limits) == (
        "svc",
        original.record.owner,
        ("read",),
        ("5/second",),
    )
    assert old.replaced_by_id == new.id
    revoked_at = window.assert_stamped(old.revoked_at, plus=timedelta(hours=24))
    assert old.status(datetime.now(UTC)) == "VALID"
    assert old.status(revoked_at - timedelta(microseconds=1)) == "VALID"
    assert old.status(revoked_at) == "REVOKED"
    assert new.status(revoked_at + timedelta(days=1)) == "VALID"
    listed = (await service.list_keys(session=session, owner=original.record.owner)).keys
    assert {r.id for r in listed} == {original.record.id, new.id}


async def test_rotate_without_grace_revokes_old_key_at_once(
    session: AsyncSession, key_format: KeyFormat
) -> None:
    original = await _create(session, key_format, unique_owner())
    with call_window() as window:
        successor, old = await _rotate(session, key_format, original.record.id, timedelta(0))
    window.assert_stamped(old.revoked_at, plus=timedelta(0))
    assert old.status(datetime.now(UTC)) == "REVOKED"
    assert successor.record.status(datetime.now(UTC)) == "VALID"
    listed = (await service.list_keys(session=session, owner=original.record.owner)).keys
    assert [r.id for r in listed] == [successor.record.id]


async def test_rotate_refuses_a_revoked_key(session: AsyncSession, key_format: KeyFormat) -> None:
    original = await _create(session, key_format, unique_owner())
    await service.revoke_key(actor=TEST_ACTOR, session=session, key_id=original.record.id)
    with pytest.raises(InvalidInput, match="is revoked and cannot be rotated"):
        await _rotate(session, key_format, original.record.id, timedelta(0))
    with pytest.raises(NotFound):
        await _rotate(session, key_format, uuid.uuid4(), timedelta(0))


async def test_update_changes_only_given_fields(
    session: AsyncSession, key_format: KeyFormat
) -> None:
    original = await _create(session, key_format, unique_owner(), scopes=["read"])
    updated = await service.update_key(
        actor=TEST_ACTOR, session=session, key_id=original.record.id, rate_limits=["10/hours"]
    )
    assert updated.rate_limits == ("10/hour",)
    assert (updated.name, updated.owner, updated.scopes) == (
        original.record.name,
        original.record.owner,
        ("read",),
    )
    renamed = await service.update_key(
        actor=TEST_ACTOR,
        session=session,
        key_id=original.record.id,
        name="renamed",
        scopes=["b", "a"],
        owner="x",
    )
    assert (renamed.name, renamed.owner, renamed.scopes, renamed.rate_limits) == (
        "renamed",
        "x",
        ("a", "b"),
        ("10/hour",),
    )
    assert await _stored(session, original.record.id) == renamed


async def test_update_rejects_bad_values_and_changes_nothing(
    session: AsyncSession, key_format: KeyFormat
) -> None:
    original = await _create(session, key_format, unique_owner(), rate_limits=["1/second"])
    with pytest.raises(InvalidInput, match="invalid rate limit 'lots'"):
        await service.update_key(
            actor=TEST_ACTOR, session=session, key_id=original.record.id, rate_limits=["lots"]
        )
    await session.rollback()
    with pytest.raises(InvalidInput, match="invalid scope"):
        await service.update_key(
            actor=TEST_ACTOR, session=session, key_id=original.record.id, scopes=["no spaces"]
        )
    await session.rollback()
    assert await service.get_key(session=session, key_id=original.record.id) == original.record
