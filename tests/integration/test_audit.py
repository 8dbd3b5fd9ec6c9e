"""The audit log and admin grants: exact entries after each admin action over HTTP and from the
CLI, none after a failed one, `GET /v1/admin/audit` pages, and `admin:grant` for admin keys."""

from __future__ import annotations

import getpass
import json
import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from service.config import Settings
from service.db import Database
from tests.factories import (
    CliResult,
    assert_problem,
    create_key,
    key_header,
    run_cli,
    unique_owner,
)

CLI_ACTOR = f"cli:{getpass.getuser()}"


@pytest.fixture(scope="module")
def client(api: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    return api[1]


async def _admin(
    database: Database, settings: Settings, *scopes: str
) -> tuple[str, dict[str, str]]:
    """A fresh admin key (its own actor id, so a test's entries are its own): id and headers."""
    issued = await create_key(database, settings, name="auditor", scopes=["admin", *scopes])
    return str(issued.record.id), key_header(issued.plaintext)


async def _entries(client: httpx.AsyncClient, headers: dict[str, str], key_id: str) -> list[Any]:
    response = await client.get("/v1/admin/audit", params={"key_id": key_id}, headers=headers)
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["next_cursor"] is None
    return [
        (entry["action"], entry["key_id"], entry["actor"], entry["changes"])
        for entry in page["entries"]
    ]


def _same_instant(audited: str, shown: str) -> bool:
    return datetime.fromisoformat(audited) == datetime.fromisoformat(shown)


async def test_each_http_action_writes_one_exact_entry(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    actor, admin = await _admin(database, settings)
    owner = unique_owner("audit")
    created = await client.post(
        "/v1/admin/keys",
        json={"name": "svc", "owner": owner, "scopes": ["read"], "rate_limit": "5/minute"},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    key_id = created.json()["id"]
    assert created.json()["created_by"] == actor
    create_entry = (
        "create",
        key_id,
        actor,
        {
            "name": {"from": None, "to": "svc"},
            "owner": {"from": None, "to": owner},
            "scopes": {"from": None, "to": ["read"]},
            "rate_limits": {"from": None, "to": ["5/minute"]},
        },
    )
    assert await _entries(client, admin, key_id) == [create_entry]
    assert created.json()["key"] not in json.dumps(await _entries(client, admin, key_id))

    patched = await client.patch(
        f"/v1/admin/keys/{key_id}", json={"name": "svc2", "owner": owner}, headers=admin
    )
    assert patched.status_code == 200, patched.text
    update_entry = ("update", key_id, actor, {"name": {"from": "svc", "to": "svc2"}})
    assert await _entries(client, admin, key_id) == [create_entry, update_entry]

    rotated = await client.post(f"/v1/admin/keys/{key_id}/rotate", headers=admin)
    assert rotated.status_code == 201, rotated.text
    successor = rotated.json()
    assert successor["created_by"] == actor
    *_, rotate_entry = await _entries(client, admin, key_id)
    assert rotate_entry[:3] == ("rotate", key_id, actor)
    assert set(rotate_entry[3]) == {"revoked_at", "replaced_by_id"}
    assert rotate_entry[3]["replaced_by_id"] == {"from": None, "to": successor["id"]}
    original = (await client.get(f"/v1/admin/keys/{key_id}", headers=admin)).json()
    assert rotate_entry[3]["revoked_at"]["from"] is None
    assert _same_instant(rotate_entry[3]["revoked_at"]["to"], original["revoked_at"])

    revoked = await client.delete(f"/v1/admin/keys/{successor['id']}", headers=admin)
    assert revoked.status_code == 200
    (revoke_entry,) = await _entries(client, admin, successor["id"])
    assert revoke_entry[:3] == ("revoke", successor["id"], actor)
    assert list(revoke_entry[3]) == ["revoked_at"]
    assert _same_instant(revoke_entry[3]["revoked_at"]["to"], revoked.json()["revoked_at"])
    # The successor's creation is told by the rotate entry, not by an entry of its own.
    assert len(await _entries(client, admin, key_id)) == 3


async def test_failed_actions_write_no_entry(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    _, admin = await _admin(database, settings)
    target = await create_key(database, settings, scopes=["read"])
    key_id = str(target.record.id)
    before = await _entries(client, admin, key_id)
    assert [entry[0] for entry in before] == ["create"]
    bad_limit = await client.patch(
        f"/v1/admin/keys/{key_id}", json={"rate_limit": "lots"}, headers=admin
    )
    assert_problem(bad_limit, 422, "VALIDATION_ERROR")
    bad_scope = await client.patch(
        f"/v1/admin/keys/{key_id}", json={"scopes": ["Bad Scope"]}, headers=admin
    )
    assert_problem(bad_scope, 422, "VALIDATION_ERROR")
    grant = await client.patch(
        f"/v1/admin/keys/{key_id}", json={"scopes": ["admin"]}, headers=admin
    )
    assert_problem(grant, 403, "FORBIDDEN")
    assert (await client.delete(f"/v1/admin/keys/{key_id}", headers=admin)).status_code == 200
    again = await client.post(f"/v1/admin/keys/{key_id}/rotate", headers=admin)
    assert_problem(again, 422, "VALIDATION_ERROR")
    missing = str(uuid.uuid4())
    assert_problem(
        await client.delete(f"/v1/admin/keys/{missing}", headers=admin), 404, "NOT_FOUND"
    )
    assert [entry[0] for entry in await _entries(client, admin, key_id)] == ["create", "revoke"]
    assert await _entries(client, admin, missing) == []


async def test_the_log_pages_by_cursor(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    _, admin = await _admin(database, settings)
    key_id = str((await create_key(database, settings)).record.id)
    for name in ("a", "b", "c"):
        patched = await client.patch(f"/v1/admin/keys/{key_id}", json={"name": name}, headers=admin)
        assert patched.status_code == 200
    pages = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"key_id": key_id, "limit": 3}
        if cursor is not None:
            params["cursor"] = cursor
        page = (await client.get("/v1/admin/audit", params=params, headers=admin)).json()
        pages.append([entry["action"] for entry in page["entries"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert cursor == page["entries"][-1]["id"]
    assert pages == [["create", "update", "update"], ["update"]]
    for bad in ({"cursor": -1}, {"limit": 0}, {"limit": 1001}, {"key_id": "nope"}):
        answer = await client.get("/v1/admin/audit", params=bad, headers=admin)
        assert_problem(answer, 422, "VALIDATION_ERROR")
    plain = await create_key(database, settings, scopes=["read"])
    assert_problem(
        await client.get("/v1/admin/audit", headers=key_header(plain.plaintext)), 403, "FORBIDDEN"
    )
    assert_problem(await client.get("/v1/admin/audit"), 401, "MISSING_KEY")


@pytest.mark.parametrize("scopes", [["admin"], ["read", "admin:grant"]])
async def test_minting_an_admin_key_over_http_needs_admin_grant(
    client: httpx.AsyncClient, database: Database, settings: Settings, scopes: list[str]
) -> None:
    actor, admin = await _admin(database, settings)
    refused = await client.post(
        "/v1/admin/keys", json={"name": "escalate", "scopes": scopes}, headers=admin
    )
    body = assert_problem(refused, 403, "FORBIDDEN")
    assert body["detail"] == "this key lacks the scope(s) admin:grant"
    assert {"ratelimit-limit", "ratelimit-remaining"} <= set(refused.headers)
    other_admin = await create_key(database, settings, scopes=["admin"])
    rotate = await client.post(f"/v1/admin/keys/{other_admin.record.id}/rotate", headers=admin)
    assert_problem(rotate, 403, "FORBIDDEN")
    plain = await create_key(database, settings, scopes=["read"])
    grant = await client.patch(
        f"/v1/admin/keys/{plain.record.id}", json={"scopes": scopes}, headers=admin
    )
    assert_problem(grant, 403, "FORBIDDEN")
    for refused_id in (other_admin.record.id, plain.record.id):
        assert [e[0] for e in await _entries(client, admin, str(refused_id))] == ["create"]

    granter_id, granter = await _admin(database, settings, "admin:grant")
    minted = await client.post(
        "/v1/admin/keys", json={"name": "new admin", "scopes": scopes}, headers=granter
    )
    assert minted.status_code == 201, minted.text
    assert (minted.json()["scopes"], minted.json()["created_by"]) == (sorted(scopes), granter_id)
    rotated = await client.post(f"/v1/admin/keys/{other_admin.record.id}/rotate", headers=granter)
    assert rotated.status_code == 201, rotated.text
    # Keys without an admin scope stay an ordinary admin's business.
    ordinary = await client.post(
        "/v1/admin/keys", json={"name": "svc", "scopes": ["read"]}, headers=admin
    )
    assert (ordinary.status_code, ordinary.json()["created_by"]) == (201, actor)


def _ok(result: CliResult) -> str:
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


async def test_each_cli_action_writes_one_exact_entry(settings: Settings) -> None:
    owner = unique_owner("cli-audit")
    created = json.loads(
        _ok(
            await run_cli(
                settings, "keys", "create", "--name", "cli", "--owner", owner,
                "--scopes", "admin", "--json",
            )
        )
    )  # fmt: skip
    key_id = created["id"]
    assert created["created_by"] == CLI_ACTOR
    _ok(await run_cli(settings, "keys", "set-limit", key_id, "9/minute"))
    failed = await run_cli(settings, "keys", "set-limit", key_id, "lots")
    assert failed.returncode == 2
    rotated = json.loads(_ok(await run_cli(settings, "keys", "rotate", key_id, "--json")))
    _ok(await run_cli(settings, "keys", "revoke", rotated["id"]))

    listed = json.loads(_ok(await run_cli(settings, "audit", "list", "--key", key_id, "--json")))
    assert [(e["action"], e["key_id"], e["actor"]) for e in listed] == [
        ("create", key_id, CLI_ACTOR),
        ("set-limit", key_id, CLI_ACTOR),
        ("rotate", key_id, CLI_ACTOR),
    ]
    assert listed[0]["changes"] == {
        "name": {"from": None, "to": "cli"},
        "owner": {"from": None, "to": owner},
        "scopes": {"from": None, "to": ["admin"]},
    }
    assert listed[1]["changes"] == {"rate_limits": {"from": [], "to": ["9/minute"]}}
    assert listed[2]["changes"]["replaced_by_id"] == {"from": None, "to": rotated["id"]}
    assert listed[0]["id"] < listed[1]["id"] < listed[2]["id"]

    table = _ok(await run_cli(settings, "audit", "list", "--key", rotated["id"]))
    assert "revoke" in table
    assert CLI_ACTOR in table
    bad = await run_cli(settings, "audit", "list", "--key", "nope")
    assert (bad.returncode, bad.stderr_lines) == (
        1,
        ["error: invalid key id 'nope': expected a UUID such as 0b7c5e2a-..."],
    )
