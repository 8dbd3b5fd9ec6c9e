"""The key bodies: `KeyOut` and `KeyIssued` are `KeyRecord` under API names, spelled as before."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from pydantic import TypeAdapter

from service.keys.schemas import KeyIssued, KeyOut, WhoAmI, key_json
from tests.unit.records import key_record

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
RECORD = key_record(
    scopes=("admin", "read"),
    created_at=NOW,
    expires_at=NOW + timedelta(days=30),
    replaced_by_id=uuid.UUID(int=2),
    created_by="cli:alice",
    metadata={"plan": "pro", "seats": [1, 2.5, None]},
)
KEY_BODY = (
    '{"id":"00000000-0000-0000-0000-000000000001","name":"ci","display_prefix":"gk_abcdefgh",'
    '"owner":null,"scopes":["admin","read"],"rate_limits":[],"owner_rate_limits":[],'
    '"created_at":"2025-03-01T12:00:00Z","expires_at":"2025-03-31T12:00:00Z",'
    '"revoked_at":null,"last_used_at":null,"replaced_by_id":"00000000-0000-0000-0000-000000000002",'
    '"created_by":"cli:alice","metadata":{"plan":"pro","seats":[1,2.5,null]},"enabled":true,'
    '"credits_remaining":null,"refill":null,"credits_refilled_at":null,"credits_epoch":0'
)


def test_key_out_body_has_every_field_in_order() -> None:
    assert TypeAdapter(KeyOut).dump_json(KeyOut.of(RECORD)).decode() == KEY_BODY + "}"


def test_key_issued_body_adds_the_plaintext_last() -> None:
    issued = KeyIssued.of(RECORD, key="gk_secret")
    assert TypeAdapter(KeyIssued).dump_json(issued).decode() == KEY_BODY + ',"key":"gk_secret"}'


def test_key_json_is_the_api_body_as_values() -> None:
    assert key_json(RECORD) == json.loads(KEY_BODY + "}")


def test_whoami_shows_its_part_of_the_record_with_the_limit_in_force() -> None:
    assert WhoAmI.of(RECORD, ("10/second", "1000/minute")).model_dump_json() == (
        '{"id":"00000000-0000-0000-0000-000000000001","name":"ci","display_prefix":"gk_abcdefgh",'
        '"owner":null,"scopes":["admin","read"],"rate_limits":["10/second","1000/minute"],'
        '"owner_rate_limits":[],"expires_at":"2025-03-31T12:00:00Z",'
        '"metadata":{"plan":"pro","seats":[1,2.5,null]}}'
    )
