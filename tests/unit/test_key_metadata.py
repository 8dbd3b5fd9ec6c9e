"""Metadata and state of a key, pure: what the service accepts, what an update body means, what
the directory and the audit log carry of them."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from service.audit.service import changes
from service.errors import InvalidInput
from service.keys.directory import KeyEntry, decode, encode
from service.keys.metadata import MAX_METADATA_BYTES, clean_metadata
from service.keys.schemas import KeyCreate, KeyUpdate
from tests.unit.records import key_record

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
RECORD = key_record(
    name="svc",
    created_at=NOW,
    created_by="cli:alice",
)


def _compact_size(metadata: dict[str, Any]) -> int:
    return len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode())


@pytest.mark.parametrize(
    "text",
    ["x" * 4088, "é" * 2044, "x" * 4085 + "株"],  # each `{"k":"..."}` exactly 4096 bytes
)
def test_metadata_of_exactly_the_cap_is_kept_one_byte_more_is_refused(text: str) -> None:
    at_cap = {"k": text}
    assert (_compact_size(at_cap), MAX_METADATA_BYTES) == (4096, 4096)
    assert clean_metadata(at_cap) is at_cap
    over = {"k": text + "x"}
    with pytest.raises(InvalidInput) as refused:
        clean_metadata(over)
    assert refused.value.message == "metadata must be at most 4096 bytes as compact JSON, not 4097"


@pytest.mark.parametrize(
    ("metadata", "says"),
    [
        ([1, 2], "metadata must be a JSON object, not list"),
        ("plan", "metadata must be a JSON object, not str"),
        (None, "metadata must be a JSON object, not NoneType"),
        ({"n": float("nan")}, "metadata must be plain JSON: Out of range float values"),
        ({"n": float("inf")}, "metadata must be plain JSON: Out of range float values"),
        ({"s": "\ud800"}, "metadata must be plain JSON: 'utf-8' codec can't encode"),
        ({"s": "a\x00b"}, "metadata must not contain NUL characters"),
        ({"a\x00": 1}, "metadata must not contain NUL characters"),
    ],
)
def test_metadata_postgresql_would_refuse_is_refused_first(metadata: object, says: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        clean_metadata(metadata)
    assert refused.value.message.startswith(says)


def test_a_backslash_before_u0000_is_text_not_nul() -> None:
    assert clean_metadata({"path": "C:\\u0000"}) == {"path": "C:\\u0000"}


def test_an_update_body_says_which_fields_it_changes() -> None:
    assert KeyUpdate.model_validate({}).model_fields_set == set()
    clear = KeyUpdate.model_validate({"expires_at": None})
    assert (clear.model_fields_set, clear.expires_at) == ({"expires_at"}, None)
    at = KeyUpdate.model_validate({"expires_at": "2030-01-01T00:00:00Z"})
    assert at.expires_at == datetime(2030, 1, 1, tzinfo=UTC)
    body = KeyUpdate.model_validate({"metadata": {"plan": "pro"}, "enabled": False})
    assert (body.metadata, body.enabled) == ({"plan": "pro"}, False)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"metadata": None}, "metadata cannot be null; leave it out to keep it"),
        ({"enabled": None}, "enabled cannot be null; leave it out to keep it"),
        ({"enabled": "no"}, "Input should be a valid boolean"),
        ({"enabled": 0}, "Input should be a valid boolean"),
        ({"metadata": [1]}, "Input should be a valid dictionary"),
        ({"expires_at": "soon"}, "Input should be a valid datetime"),
    ],
)
def test_an_update_body_refuses_what_has_no_meaning(body: dict[str, object], says: str) -> None:
    with pytest.raises(ValidationError) as refused:
        KeyUpdate.model_validate(body)
    (error,) = refused.value.errors()
    assert error["loc"] == (next(iter(body)),)
    assert says in error["msg"]


def test_a_new_key_has_empty_metadata_unless_given() -> None:
    assert KeyCreate.model_validate({"name": "x"}).metadata == {}
    assert KeyCreate.model_validate({"name": "x", "metadata": {"a": 1}}).metadata == {"a": 1}


def test_the_directory_carries_metadata_and_state() -> None:
    record = replace(RECORD, metadata={"plan": "pro", "ids": [1, 2]}, enabled=False)
    entry = KeyEntry("ab" * 32, 7, record)
    assert decode(entry.key_hash, b"7|" + encode(entry)) == entry
    # An entry written before these fields existed is not trusted: PostgreSQL answers instead.
    older = json.loads(encode(entry))
    del older["metadata"], older["enabled"]
    assert decode(entry.key_hash, b"7|" + json.dumps(older).encode()) is None


def test_the_audit_log_records_metadata_and_state_changes() -> None:
    after = replace(RECORD, metadata={"plan": "pro"}, enabled=False)
    assert changes(RECORD, after) == {
        "metadata": {"from": {}, "to": {"plan": "pro"}},
        "enabled": {"from": True, "to": False},
    }
    assert changes(after, RECORD) == {
        "metadata": {"from": {"plan": "pro"}, "to": {}},
        "enabled": {"from": False, "to": True},
    }
    # A new key: only what was set, and its defaults are not news.
    assert changes(None, RECORD) == {"name": {"from": None, "to": "svc"}}
    assert changes(None, after) == {
        "name": {"from": None, "to": "svc"},
        "metadata": {"from": None, "to": {"plan": "pro"}},
        "enabled": {"from": None, "to": False},
    }
