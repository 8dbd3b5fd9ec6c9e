"""`KeyRecord.status` at injected times, and the record built from an (unsaved) ORM object."""

from __future__ import annotations

import uuid
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect

from service.keys.models import ApiKey
from service.keys.record import MAPPED_ATTRIBUTES, KeyRecord
from service.keys.schemas import KeyOut
from tests.unit.records import key_record

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TICK = timedelta(microseconds=1)


def _record(
    *,
    expires_at: datetime | None = None,
    revoked_at: datetime | None = None,
    enabled: bool = True,
) -> KeyRecord:
    return key_record(
        owner="team",
        scopes=("admin",),
        rate_limits=("10/second",),
        created_at=NOW - timedelta(days=1),
        expires_at=expires_at,
        revoked_at=revoked_at,
        metadata={"plan": "pro"},
        enabled=enabled,
    )


@pytest.mark.parametrize(
    ("expires_at", "revoked_at", "at", "status"),
    [
        (None, None, NOW, "VALID"),
        (NOW + TICK, None, NOW, "VALID"),
        (NOW, None, NOW, "EXPIRED"),
        (NOW - TICK, None, NOW, "EXPIRED"),
        (None, NOW + timedelta(hours=24), NOW, "VALID"),  # rotated, grace running
        (None, NOW + timedelta(hours=24), NOW + timedelta(hours=24) - TICK, "VALID"),
        (None, NOW + timedelta(hours=24), NOW + timedelta(hours=24), "REVOKED"),
        (None, NOW, NOW, "REVOKED"),
        (None, NOW - timedelta(days=3), NOW, "REVOKED"),
        (NOW - TICK, NOW - TICK, NOW, "REVOKED"),  # revocation wins over expiry
        (NOW - TICK, NOW + TICK, NOW, "EXPIRED"),
        (NOW + TICK, NOW - TICK, NOW, "REVOKED"),
    ],
)
def test_status_at_injected_time(
    expires_at: datetime | None, revoked_at: datetime | None, at: datetime, status: str
) -> None:
    record = _record(expires_at=expires_at, revoked_at=revoked_at)
    assert record.status(at) == status
    assert record.is_active(at) is (status == "VALID")


@pytest.mark.parametrize(
    ("expires_at", "revoked_at", "status"),
    [
        (None, None, "DISABLED"),
        (NOW + TICK, NOW + TICK, "DISABLED"),  # in a rotation's grace: still only disabled
        (NOW, None, "EXPIRED"),  # enabling would not bring these back: their own code wins
        (None, NOW, "REVOKED"),
        (NOW, NOW, "REVOKED"),
    ],
)
def test_a_disabled_key_says_disabled_only_while_enabling_would_admit_it(
    expires_at: datetime | None, revoked_at: datetime | None, status: str
) -> None:
    record = _record(expires_at=expires_at, revoked_at=revoked_at, enabled=False)
    assert record.status(NOW) == status
    assert not record.is_active(NOW)


def test_equal_records_hash_equal_and_metadata_still_tells_records_apart() -> None:
    """The fast path keys whoami bodies by record: a dict field must not break the hash, and
    a metadata change must not serve the old body."""
    record = _record()
    same = replace(record, metadata={"plan": "pro"})
    other = replace(record, metadata={"plan": "free"})
    assert record == same
    assert hash(record) == hash(same)
    assert record != other
    bodies = {(record, "10/second"): "pro body"}
    assert bodies[(same, "10/second")] == "pro body"
    assert (other, "10/second") not in bodies
    assert replace(record, enabled=False) != record


def test_same_record_changes_status_as_time_passes() -> None:
    record = _record(expires_at=NOW + timedelta(days=30))
    statuses = [record.status(NOW + timedelta(days=d)) for d in (0, 29, 30, 31)]
    assert statuses == ["VALID", "VALID", "EXPIRED", "EXPIRED"]


def test_record_is_immutable() -> None:
    record = _record()
    with pytest.raises(AttributeError):
        record.revoked_at = NOW  # type: ignore[misc]


def test_of_copies_every_field_and_freezes_scopes() -> None:
    key_id, successor = uuid.uuid4(), uuid.uuid4()
    model = ApiKey(
        id=key_id,
        key_hash="0" * 64,
        display_prefix="gk_abcdefgh",
        name="ci",
        owner="team",
        scopes=["admin", "read"],
        rate_limits=("100/minute",),
        owner_rate_limits=(),
        created_at=NOW,
        expires_at=NOW + timedelta(days=1),
        revoked_at=None,
        last_used_at=NOW,
        replaced_by_id=successor,
        created_by="cli:alice",
        key_metadata={"plan": "pro"},
        enabled=False,
        credits_remaining=None,
        refill=None,
        credits_refilled_at=None,
        credits_epoch=0,
    )
    record = KeyRecord.of(model)
    assert record == KeyRecord(
        id=key_id,
        name="ci",
        display_prefix="gk_abcdefgh",
        owner="team",
        scopes=("admin", "read"),
        rate_limits=("100/minute",),
        owner_rate_limits=(),
        created_at=NOW,
        expires_at=NOW + timedelta(days=1),
        revoked_at=None,
        last_used_at=NOW,
        replaced_by_id=successor,
        created_by="cli:alice",
        metadata={"plan": "pro"},
        enabled=False,
        credits_remaining=None,
        refill=None,
        credits_refilled_at=None,
        credits_epoch=0,
    )
    assert KeyRecord.of(KeyOut.of(record)) == record  # re-read by field name, as the API does
    assert not hasattr(record, "key_hash")
    # The fast path keys its cached bodies by record: an equal record built again must find them.
    assert {record: "body"}[KeyRecord.of(model)] == "body"


def test_record_declares_every_column_of_the_table_but_the_hash_and_the_change_stamps() -> None:
    """A column added to the table without its field here would never leave the database.

    The hash is a secret's digest; `version` and `changed_at` order a key's states for the
    change feed and the directory (`KeyEntry` carries the version) and are no part of the key.
    """
    columns = {attribute.key for attribute in inspect(ApiKey).column_attrs}
    bookkeeping = {"key_hash", "version", "changed_at"}
    attributes = {MAPPED_ATTRIBUTES.get(field.name, field.name) for field in fields(KeyRecord)}
    assert columns - bookkeeping == attributes
    # The table's own names are the record's: rows of the table are read as records too.
    assert {column.name for column in ApiKey.__table__.columns} - bookkeeping == {
        field.name for field in fields(KeyRecord)
    }
