"""Key metadata, enabled and full updates over the admin API in-process (real PostgreSQL and
Redis): exact bodies and codes on every check route, one exact audit entry per update and none
for a refused one."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from service.config import Settings
from service.db import Database
from service.ratelimit.policy import parse_rate_limit
from tests.factories import assert_problem, create_key, key_header, unique_owner

ADMIN_KEYS = "/v1/admin/keys"
AT_CAP = {"k": "é" * 2044}  # exactly 4096 bytes as compact UTF-8 JSON
OVER_CAP = {"k": "é" * 2044 + "x"}


@pytest.fixture(scope="module")
def client(api: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    return api[1]


@pytest.fixture(scope="module")
async def admin(database: Database, settings: Settings) -> tuple[str, dict[str, str]]:
    """An admin key of this module: its id (the actor of its entries) and headers."""
    issued = await create_key(database, settings, name="state admin", scopes=["admin"])
    return str(issued.record.id), key_header(issued.plaintext)


async def _create(
    client: httpx.AsyncClient, headers: dict[str, str], **body: object
) -> dict[str, Any]:
    response = await client.post(ADMIN_KEYS, json={"name": "svc", **body}, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _entries(database: Database, key_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    async with database.get_session() as session:
        rows = await session.execute(
            text("SELECT action, actor, changes FROM audit_log WHERE key_id = :id ORDER BY id"),
            {"id": uuid.UUID(key_id)},
        )
        return [(row.action, row.actor, row.changes) for row in rows]


async def _stored(database: Database, key_id: str) -> tuple[Any, ...]:
    """The row as stored, version included: a refused update must leave all of it."""
    async with database.get_session() as session:
        row = (
            await session.execute(
                text("SELECT * FROM api_keys WHERE id = :id"), {"id": uuid.UUID(key_id)}
            )
        ).one()
        return tuple(row)


async def test_metadata_round_trips_through_every_body(
    client: httpx.AsyncClient, admin: tuple[str, dict[str, str]], settings: Settings
) -> None:
    _, headers = admin
    owner = unique_owner("metadata")
    metadata = {"plan": "pro", "tenant": {"id": 7, "tags": ["a", "ü"]}, "ratio": 0.5}
    created = await _create(client, headers, owner=owner, metadata=metadata)
    key_id, plaintext = created["id"], created["key"]
    assert (created["metadata"], created["enabled"]) == (metadata, True)

    shown = (await client.get(f"{ADMIN_KEYS}/{key_id}", headers=headers)).json()
    assert shown == {k: v for k, v in created.items() if k != "key"}
    listed = (await client.get(ADMIN_KEYS, params={"owner": owner}, headers=headers)).json()["keys"]
    assert listed == [shown]

    whoami = await client.get("/v1/whoami", headers=key_header(plaintext))
    assert whoami.status_code == 200, whoami.text
    assert whoami.json() == {
        "id": key_id,
        "name": "svc",
        "display_prefix": created["display_prefix"],
        "owner": owner,
        "scopes": [],
        "rate_limits": [str(parse_rate_limit(settings.rate_limit_default))],
        "owner_rate_limits": [],
        "expires_at": None,
        "metadata": metadata,
    }
    verified = await client.post("/v1/keys/verify", json={"key": plaintext})
    assert verified.status_code == 200
    body = verified.json()
    assert {k: v for k, v in body.items() if k != "ratelimit"} == {
        "valid": True,
        "code": "VALID",
        "key_id": key_id,
        "owner": owner,
        "scopes": [],
        "metadata": metadata,
        "credits_remaining": None,
    }
    # A change is answered at once: whoami's body is cached by record, and the record changed.
    patched = await client.patch(
        f"{ADMIN_KEYS}/{key_id}", json={"metadata": {"plan": "team"}}, headers=headers
    )
    assert patched.json()["metadata"] == {"plan": "team"}
    again = await client.get("/v1/whoami", headers=key_header(plaintext))
    assert again.json() == {**whoami.json(), "metadata": {"plan": "team"}}

    plain = await _create(client, headers)
    assert plain["metadata"] == {}
    plain_whoami = await client.get("/v1/whoami", headers=key_header(plain["key"]))
    assert plain_whoami.json()["metadata"] == {}


async def test_metadata_at_the_cap_is_kept_one_byte_over_is_422_and_writes_nothing(
    client: httpx.AsyncClient, admin: tuple[str, dict[str, str]], database: Database
) -> None:
    _, headers = admin
    owner = unique_owner("cap")
    at_cap = await _create(client, headers, owner=owner, metadata=AT_CAP)
    assert at_cap["metadata"] == AT_CAP

    refused = await client.post(
        ADMIN_KEYS, json={"name": "svc", "owner": owner, "metadata": OVER_CAP}, headers=headers
    )
    problem = assert_problem(refused, 422, "VALIDATION_ERROR")
    assert problem["detail"] == "metadata must be at most 4096 bytes as compact JSON, not 4097"
    listed = (await client.get(ADMIN_KEYS, params={"owner": owner}, headers=headers)).json()["keys"]
    assert [key["id"] for key in listed] == [at_cap["id"]]

    before, entries = await _stored(database, at_cap["id"]), await _entries(database, at_cap["id"])
    patched = await client.patch(
        f"{ADMIN_KEYS}/{at_cap['id']}", json={"metadata": OVER_CAP}, headers=headers
    )
    assert assert_problem(patched, 422, "VALIDATION_ERROR")["detail"] == problem["detail"]
    assert await _stored(database, at_cap["id"]) == before
    assert await _entries(database, at_cap["id"]) == entries


async def test_a_disabled_key_is_refused_on_every_check_route_and_admitted_when_enabled(
    client: httpx.AsyncClient, admin: tuple[str, dict[str, str]], database: Database
) -> None:
    actor, headers = admin
    created = await _create(client, headers, metadata={"plan": "pro"})
    key_id, plaintext = created["id"], created["key"]
    assert (await client.get("/v1/whoami", headers=key_header(plaintext))).status_code == 200

    url = f"{ADMIN_KEYS}/{key_id}"
    disabled = await client.patch(url, json={"enabled": False}, headers=headers)
    assert disabled.status_code == 200, disabled.text
    assert disabled.json() == {
        **{k: v for k, v in created.items() if k != "key"},
        "enabled": False,
    }
    for path in ("/v1/whoami", "/v1/auth", "/v1/auth/some/original/path"):
        response = await client.get(path, headers=key_header(plaintext))
        assert assert_problem(response, 403, "DISABLED") == {
            "type": "urn:gatekey:problem:disabled",
            "title": "Disabled",
            "status": 403,
            "detail": "the API key is disabled",
            "code": "DISABLED",
        }
        assert "www-authenticate" not in response.headers
    verified = await client.post("/v1/keys/verify", json={"key": plaintext})
    assert (verified.status_code, verified.json()) == (
        200,
        {
            "valid": False,
            "code": "DISABLED",
            "key_id": None,
            "owner": None,
            "scopes": [],
            "metadata": None,
            "ratelimit": None,
            "credits_remaining": None,
        },
    )
    # Disabling is not revoking: the key is still listed as it was, and its successor can't be
    # minted while it is off.
    rotated = await client.post(f"{ADMIN_KEYS}/{key_id}/rotate", headers=headers)
    assert assert_problem(rotated, 422, "VALIDATION_ERROR")["detail"] == (
        f"key {key_id} is disabled and cannot be rotated"
    )

    enabled = await client.patch(url, json={"enabled": True}, headers=headers)
    assert enabled.json()["enabled"] is True
    whoami = await client.get("/v1/whoami", headers=key_header(plaintext))
    assert (whoami.status_code, whoami.json()["metadata"]) == (200, {"plan": "pro"})
    assert (await _entries(database, key_id))[1:] == [
        ("update", actor, {"enabled": {"from": True, "to": False}}),
        ("update", actor, {"enabled": {"from": False, "to": True}}),
    ]


async def test_each_field_is_updated_with_one_exact_audit_entry(
    client: httpx.AsyncClient, admin: tuple[str, dict[str, str]], database: Database
) -> None:
    actor, headers = admin
    owner = unique_owner("update")
    created = await _create(client, headers, owner=owner, scopes=["read"], expires_in="30d")
    key_id = created["id"]
    url = f"{ADMIN_KEYS}/{key_id}"
    expires = created["expires_at"].replace("Z", "+00:00")  # the audit log writes isoformat
    steps: list[tuple[dict[str, Any], dict[str, Any]]] = [
        ({"name": "renamed"}, {"name": {"from": "svc", "to": "renamed"}}),
        ({"owner": "team"}, {"owner": {"from": owner, "to": "team"}}),
        ({"scopes": ["write", "read"]}, {"scopes": {"from": ["read"], "to": ["read", "write"]}}),
        ({"metadata": {"plan": "pro"}}, {"metadata": {"from": {}, "to": {"plan": "pro"}}}),
        (
            {"expires_at": "2030-01-01T00:00:00+02:00"},
            {"expires_at": {"from": expires, "to": "2029-12-31T22:00:00+00:00"}},
        ),
        ({"expires_at": None}, {"expires_at": {"from": "2029-12-31T22:00:00+00:00", "to": None}}),
        ({"enabled": False}, {"enabled": {"from": True, "to": False}}),
        ({"metadata": {}}, {"metadata": {"from": {"plan": "pro"}, "to": {}}}),
        ({}, {}),  # nothing sent, nothing changed: still one entry of the call
    ]
    expected = {k: v for k, v in created.items() if k != "key"}
    for body, changes in steps:
        response = await client.patch(url, json=body, headers=headers)
        assert response.status_code == 200, response.text
        for field, change in changes.items():
            expected[field] = change["to"]
        if "expires_at" in changes and changes["expires_at"]["to"] is not None:
            expected["expires_at"] = "2029-12-31T22:00:00Z"
        assert response.json() == expected, body
        *_, (action, by, recorded) = await _entries(database, key_id)
        assert (action, by, recorded) == ("update", actor, changes), body
    assert len(await _entries(database, key_id)) == 1 + len(steps)
    shown = (await client.get(url, headers=headers)).json()
    assert shown == expected
    assert (shown["expires_at"], shown["enabled"], shown["metadata"]) == (None, False, {})


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ('{"metadata": [1, 2]}', "metadata: Input should be a valid dictionary"),
        ('{"metadata": "plan"}', "metadata: Input should be a valid dictionary"),
        ('{"metadata": null}', "metadata: Value error, metadata cannot be null"),
        ('{"metadata": {"n": NaN}}', "metadata must be plain JSON"),
        ('{"metadata": {"s": "a\\u0000b"}}', "metadata must not contain NUL characters"),
        ('{"enabled": null}', "enabled: Value error, enabled cannot be null"),
        ('{"enabled": "no"}', "enabled: Input should be a valid boolean"),
        ('{"expires_at": "soon"}', "expires_at: Input should be a valid datetime"),
        ('{"expires_at": "2030-01-01T00:00:00"}', "expires_at must name its time zone"),
        ('{"name": "ok", "metadata": {"plan": "pro"}, "enabled": 3}', "enabled: Input should"),
    ],
)
async def test_a_refused_update_is_422_naming_the_field_and_writes_nothing(
    client: httpx.AsyncClient,
    admin: tuple[str, dict[str, str]],
    database: Database,
    body: str,
    says: str,
) -> None:
    _, headers = admin
    created = await _create(client, headers, metadata={"kept": True})
    before = await _stored(database, created["id"])
    response = await client.patch(
        f"{ADMIN_KEYS}/{created['id']}",
        content=body,
        headers={**headers, "Content-Type": "application/json"},
    )
    assert says in assert_problem(response, 422, "VALIDATION_ERROR")["detail"]
    assert await _stored(database, created["id"]) == before
    assert [action for action, _, _ in await _entries(database, created["id"])] == ["create"]


async def test_create_records_metadata_and_a_rotation_carries_it(
    client: httpx.AsyncClient, admin: tuple[str, dict[str, str]], database: Database
) -> None:
    actor, headers = admin
    created = await _create(client, headers, metadata={"plan": "pro"})
    set_on_create = {
        "name": {"from": None, "to": "svc"},
        "metadata": {"from": None, "to": {"plan": "pro"}},
    }
    assert await _entries(database, created["id"]) == [("create", actor, set_on_create)]
    rotated = await client.post(f"{ADMIN_KEYS}/{created['id']}/rotate", headers=headers)
    assert rotated.status_code == 201, rotated.text
    assert (rotated.json()["metadata"], rotated.json()["enabled"]) == ({"plan": "pro"}, True)
    assert created["key"] not in json.dumps(await _entries(database, created["id"]))
