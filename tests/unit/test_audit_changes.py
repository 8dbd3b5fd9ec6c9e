"""The changes an audit entry records (pure): only audited fields, JSON values, no key material."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime

from service.audit.service import changes
from tests.unit.records import key_record

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
RECORD = key_record(
    name="svc",
    scopes=("read",),
    created_at=NOW,
    created_by="cli:alice",
)


def test_create_records_the_fields_set() -> None:
    assert changes(None, RECORD) == {
        "name": {"from": None, "to": "svc"},
        "scopes": {"from": None, "to": ["read"]},
    }


def test_a_change_records_only_what_moved_as_json_values() -> None:
    successor = uuid.UUID(int=2)
    after = replace(
        RECORD,
        owner="team",
        scopes=("read", "write"),
        revoked_at=NOW,
        replaced_by_id=successor,
        last_used_at=NOW,
    )
    assert changes(RECORD, after) == {
        "owner": {"from": None, "to": "team"},
        "scopes": {"from": ["read"], "to": ["read", "write"]},
        "revoked_at": {"from": None, "to": "2026-01-02T03:04:05+00:00"},
        "replaced_by_id": {"from": None, "to": str(successor)},
    }


def test_nothing_changed_is_an_empty_record_and_no_prefix_ever_appears() -> None:
    assert changes(RECORD, RECORD) == {}
    assert "display_prefix" not in changes(None, RECORD)
    assert "gk_" not in str(changes(None, RECORD))
