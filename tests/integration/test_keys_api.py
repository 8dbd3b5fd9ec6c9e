"""The HTTP API in-process on real PostgreSQL and Redis: key checks, verify, admin, health."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import text

from service.config import Settings
from service.db import Database
from service.redis.keyspace import RedisKeyspace
from tests.factories import (
    assert_problem,
    call_window,
    columns_containing,
    count_statements,
    create_key,
    key_header,
    malformed_keys,
    revoke_key,
    rotate_key,
    run_cli,
    state_of,
    unique_owner,
    unknown_key,
)

KEY_ENDPOINTS = ["/v1/whoami", "/v1/auth"]


@pytest.fixture(scope="module")
def client(api: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    return api[1]


@pytest.fixture(scope="module")
def app(api: tuple[FastAPI, httpx.AsyncClient]) -> FastAPI:
    return api[0]


@pytest.fixture(scope="module")
async def admin_key(database: Database, settings: Settings) -> str:
    issued = await create_key(database, settings, name="admin", scopes=["admin"])
    return issued.plaintext


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@asynccontextmanager
async def usage_flusher_held_off(redis: Redis, settings: Settings) -> AsyncIterator[None]:
    """Hold the usage flusher's Redis lock for the block: no flusher (the app's, or another run's
    on the same Redis) writes to PostgreSQL meanwhile, so every statement there is a request's.

    Taking it waits for a flush in progress to end (generous bound); it expires by itself if the
    test dies holding it.
    """
    flush_lock = RedisKeyspace(settings.redis_namespace).flush_lock
    async with redis.lock(flush_lock, timeout=30, blocking_timeout=30):
        yield


async def test_healthz_and_readyz(client: httpx.AsyncClient) -> None:
    healthz = await client.get("/healthz")
    assert (healthz.status_code, healthz.json()) == (200, {"status": "ok"})
    readyz = await client.get("/readyz")
    assert readyz.status_code == 200
    assert readyz.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


async def test_cli_created_key_validates_on_the_async_endpoints(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    owner = unique_owner("cli")
    created = await run_cli(
        settings,
        "keys",
        "create",
        "--name",
        "from cli",
        "--owner",
        owner,
        "--scopes",
        "write,read",
        "--rate-limit",
        "50/minute",
        "--json",
    )
    assert created.returncode == 0, created.stderr
    issued = json.loads(created.stdout)
    assert issued["key"].startswith("gk_")
    assert (issued["owner"], issued["scopes"], issued["rate_limits"]) == (
        owner,
        ["read", "write"],
        ["50/minute"],
    )

    whoami = await client.get("/v1/whoami", headers=key_header(issued["key"]))
    assert whoami.status_code == 200, whoami.text
    assert whoami.json() == {
        "id": issued["id"],
        "name": "from cli",
        "display_prefix": issued["key"][:11],
        "owner": owner,
        "scopes": ["read", "write"],
        "rate_limits": ["50/minute"],
        "owner_rate_limits": [],
        "expires_at": None,
        "metadata": {},
    }
    assert whoami.headers["ratelimit-limit"] == "50"
    assert whoami.headers["ratelimit-remaining"] == "49"
    assert whoami.headers["ratelimit-policy"] == '"default";q=50;w=60'

    auth = await client.get("/v1/auth", headers=_bearer(issued["key"]))
    assert auth.status_code == 200, auth.text
    assert auth.headers["x-gatekey-key-id"] == issued["id"]
    assert auth.headers["x-gatekey-owner"] == owner
    assert auth.headers["ratelimit-remaining"] == "48"


async def test_cli_created_key_plaintext_is_in_no_table(
    database: Database, settings: Settings
) -> None:
    created = await run_cli(settings, "keys", "create", "--name", "scan", "--json")
    plaintext = json.loads(created.stdout)["key"]
    async with database.engine.connect() as connection:
        assert await columns_containing(connection, plaintext) == []
        assert await columns_containing(connection, plaintext[3:35]) == []


@pytest.mark.parametrize("endpoint", KEY_ENDPOINTS)
@pytest.mark.parametrize("style", ["x-api-key", "bearer", "bearer-lower-case"])
async def test_both_header_styles_work(
    client: httpx.AsyncClient, database: Database, settings: Settings, endpoint: str, style: str
) -> None:
    key = (await create_key(database, settings)).plaintext
    headers = {
        "x-api-key": key_header(key),
        "bearer": _bearer(key),
        "bearer-lower-case": {"authorization": f"bearer {key}"},
    }[style]
    response = await client.get(endpoint, headers=headers)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("endpoint", KEY_ENDPOINTS)
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer "}, {"X-API-Key": ""}],
)
async def test_missing_key_is_401(
    client: httpx.AsyncClient, endpoint: str, headers: dict[str, str]
) -> None:
    response = await client.get(endpoint, headers=headers)
    assert_problem(response, 401, "MISSING_KEY")
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("endpoint", KEY_ENDPOINTS)
async def test_revoked_key_is_401_revoked(
    client: httpx.AsyncClient, database: Database, settings: Settings, endpoint: str
) -> None:
    issued = await create_key(database, settings)
    await revoke_key(database, issued.record.id)
    assert_problem(await client.get(endpoint, headers=key_header(issued.plaintext)), 401, "REVOKED")


@pytest.mark.parametrize("endpoint", KEY_ENDPOINTS)
async def test_expired_key_is_401_expired(
    client: httpx.AsyncClient, database: Database, settings: Settings, endpoint: str
) -> None:
    issued = await create_key(database, settings, expires_in=timedelta(days=1))
    async with database.engine.begin() as connection:
        await connection.execute(
            text("UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = :id"),
            {"id": issued.record.id},
        )
    assert_problem(await client.get(endpoint, headers=key_header(issued.plaintext)), 401, "EXPIRED")


async def test_rotated_key_without_grace_is_refused_and_successor_works(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    original = await create_key(database, settings)
    successor = await rotate_key(database, settings, original.record.id, timedelta(0))
    assert_problem(
        await client.get("/v1/whoami", headers=key_header(original.plaintext)), 401, "REVOKED"
    )
    whoami = await client.get("/v1/whoami", headers=key_header(successor.plaintext))
    assert whoami.status_code == 200
    assert whoami.json()["id"] == str(successor.record.id)


async def test_rotated_key_with_grace_keeps_working(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    original = await create_key(database, settings)
    successor = await rotate_key(database, settings, original.record.id, timedelta(hours=1))
    for key in (original.plaintext, successor.plaintext):
        assert (await client.get("/v1/whoami", headers=key_header(key))).status_code == 200


@pytest.mark.parametrize("endpoint", KEY_ENDPOINTS)
async def test_unknown_well_formed_key_is_401_not_found(
    client: httpx.AsyncClient, settings: Settings, endpoint: str
) -> None:
    response = await client.get(endpoint, headers=key_header(unknown_key(settings)))
    assert_problem(response, 401, "NOT_FOUND")


@pytest.mark.parametrize(
    "kind", ["wrong prefix", "too short", "too long", "bad alphabet", "bad checksum"]
)
async def test_malformed_key_is_rejected_without_sql(
    app: FastAPI, client: httpx.AsyncClient, redis: Redis, settings: Settings, kind: str
) -> None:
    key = malformed_keys(settings)[kind]
    async with usage_flusher_held_off(redis, settings):
        with count_statements(state_of(app).database.engine) as statements:
            for endpoint in KEY_ENDPOINTS:
                assert_problem(
                    await client.get(endpoint, headers=key_header(key)), 401, "MALFORMED"
                )
            verify = await client.post("/v1/keys/verify", json={"key": key})
    assert verify.status_code == 200
    assert verify.json() == {
        "valid": False,
        "code": "MALFORMED",
        "key_id": None,
        "owner": None,
        "scopes": [],
        "metadata": None,
        "ratelimit": None,
        "credits_remaining": None,
    }
    assert statements == []


async def test_known_key_costs_no_query_on_repeat(
    app: FastAPI,
    client: httpx.AsyncClient,
    database: Database,
    redis: Redis,
    settings: Settings,
) -> None:
    key = (await create_key(database, settings)).plaintext
    engine = state_of(app).database.engine
    async with usage_flusher_held_off(redis, settings):
        with count_statements(engine) as first:
            assert (await client.get("/v1/whoami", headers=key_header(key))).status_code == 200
        assert [statement.split()[0] for statement in first] == ["SELECT"]
        # Any key change announced on the shared Redis (another test run, say) empties the
        # cache; one retry makes such a coincidence harmless while a cache that never hits
        # still fails.
        for _ in range(2):
            with count_statements(engine) as repeat:
                assert (await client.get("/v1/whoami", headers=key_header(key))).status_code == 200
            if not repeat:
                break
    assert repeat == []


async def test_verify_reports_each_outcome_with_200(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    owner = unique_owner()
    issued = await create_key(
        database, settings, owner=owner, scopes=["read"], rate_limit="2/minute"
    )
    key_id = str(issued.record.id)
    outcomes = [
        (await client.post("/v1/keys/verify", json={"key": issued.plaintext})) for _ in range(3)
    ]
    assert [r.status_code for r in outcomes] == [200, 200, 200]
    first, second, third = (r.json() for r in outcomes)
    assert first == {
        "valid": True,
        "code": "VALID",
        "key_id": key_id,
        "owner": owner,
        "scopes": ["read"],
        "metadata": {},
        "ratelimit": {"limit": 2, "remaining": 1, "reset": 30},
        "credits_remaining": None,
    }
    assert (second["valid"], second["code"], second["ratelimit"]["remaining"]) == (True, "VALID", 0)
    assert (third["valid"], third["code"], third["key_id"]) == (False, "RATE_LIMITED", key_id)
    assert third["ratelimit"]["remaining"] == 0
    assert outcomes[2].headers["ratelimit-policy"] == '"default";q=2;w=60'

    unknown = await client.post("/v1/keys/verify", json={"key": unknown_key(settings)})
    assert (unknown.status_code, unknown.json()["valid"], unknown.json()["code"]) == (
        200,
        False,
        "NOT_FOUND",
    )
    revoked = await create_key(database, settings)
    await revoke_key(database, revoked.record.id)
    response = await client.post("/v1/keys/verify", json={"key": revoked.plaintext})
    assert (response.status_code, response.json()["code"]) == (200, "REVOKED")


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"not json", "application/json"),
        (b"key=gk_abc", "application/x-www-form-urlencoded"),
        (b"", "application/json"),
        (b"[]", "application/json"),
        (b'{"token": "gk_abc"}', "application/json"),
        (b'{"key": 5}', "application/json"),
        (b'{"key": null}', "application/json"),
        (json.dumps({"key": "k" * 300}).encode(), "application/json"),
    ],
)
async def test_verify_bad_body_is_422_problem(
    client: httpx.AsyncClient, content: bytes, content_type: str
) -> None:
    response = await client.post(
        "/v1/keys/verify", content=content, headers={"content-type": content_type}
    )
    assert_problem(response, 422, "VALIDATION_ERROR")


async def test_unknown_route_and_method_are_problems(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/v1/nowhere"), 404, "NOT_FOUND")
    assert_problem(await client.delete("/v1/whoami"), 405, "METHOD_NOT_ALLOWED")


async def test_admin_crud(client: httpx.AsyncClient, admin_key: str) -> None:
    owner = unique_owner("admin-crud")
    admin = key_header(admin_key)
    with call_window() as creating:
        created = await client.post(
            "/v1/admin/keys",
            json={
                "name": "svc",
                "owner": owner,
                "scopes": ["read"],
                "rate_limits": ["10/second"],
                "expires_in": "30d",
            },
            headers=admin,
        )
    assert created.status_code == 201, created.text
    body = created.json()
    key_id, key = body["id"], body["key"]
    assert (body["name"], body["owner"], body["scopes"], body["rate_limits"]) == (
        "svc",
        owner,
        ["read"],
        ["10/second"],
    )
    creating.assert_stamped(body["expires_at"], plus=timedelta(days=30))
    assert (await client.get("/v1/whoami", headers=key_header(key))).status_code == 200

    listed = await client.get("/v1/admin/keys", params={"owner": owner}, headers=admin)
    assert listed.status_code == 200
    assert listed.json()["next_cursor"] is None
    assert [k["id"] for k in listed.json()["keys"]] == [key_id]
    assert all("key" not in k and "key_hash" not in k for k in listed.json()["keys"])

    shown = await client.get(f"/v1/admin/keys/{key_id}", headers=admin)
    assert shown.status_code == 200
    assert shown.json() == {k: v for k, v in body.items() if k != "key"}

    patched = await client.patch(
        f"/v1/admin/keys/{key_id}", json={"rate_limit": "5/minutes"}, headers=admin
    )
    assert (patched.status_code, patched.json()["rate_limits"]) == (200, ["5/minute"])
    assert (await client.get(f"/v1/admin/keys/{key_id}", headers=admin)).json()["rate_limits"] == [
        "5/minute"
    ]

    with call_window() as rotating:
        rotated = await client.post(
            f"/v1/admin/keys/{key_id}/rotate", json={"grace": "1h"}, headers=admin
        )
    assert rotated.status_code == 201, rotated.text
    successor = rotated.json()
    assert (successor["owner"], successor["rate_limits"]) == (owner, ["5/minute"])
    # The original stays valid for the grace, and exactly that long.
    original = (await client.get(f"/v1/admin/keys/{key_id}", headers=admin)).json()
    assert original["replaced_by_id"] == successor["id"]
    rotating.assert_stamped(original["revoked_at"], plus=timedelta(hours=1))
    for presented in (key, successor["key"]):
        assert (await client.get("/v1/whoami", headers=key_header(presented))).status_code == 200

    with call_window() as deleting:
        deleted = await client.delete(f"/v1/admin/keys/{successor['id']}", headers=admin)
    assert deleted.status_code == 200
    deleting.assert_stamped(deleted.json()["revoked_at"], plus=timedelta(0))
    active = await client.get("/v1/admin/keys", params={"owner": owner}, headers=admin)
    assert [k["id"] for k in active.json()["keys"]] == [key_id]
    everything = await client.get(
        "/v1/admin/keys", params={"owner": owner, "all": "true"}, headers=admin
    )
    assert [k["id"] for k in everything.json()["keys"]] == [key_id, successor["id"]]


async def test_admin_delete_is_seen_within_a_second(
    client: httpx.AsyncClient, admin_key: str, database: Database, settings: Settings
) -> None:
    key = await create_key(database, settings)
    watcher = asyncio.create_task(_first_refusal(client, key.plaintext))
    await asyncio.sleep(0.1)
    deleted = await client.delete(f"/v1/admin/keys/{key.record.id}", headers=key_header(admin_key))
    assert deleted.status_code == 200
    revoked_at = time.monotonic()
    assert await watcher - revoked_at < 1.0


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/admin/keys", None),
        ("POST", "/v1/admin/keys", {"name": "x"}),
        ("GET", "/v1/admin/keys/{id}", None),
        ("PATCH", "/v1/admin/keys/{id}", {"name": "y"}),
        ("DELETE", "/v1/admin/keys/{id}", None),
        ("POST", "/v1/admin/keys/{id}/rotate", None),
    ],
)
async def test_admin_needs_the_admin_scope(
    client: httpx.AsyncClient,
    database: Database,
    settings: Settings,
    method: str,
    path: str,
    body: dict[str, str] | None,
) -> None:
    plain = await create_key(database, settings, scopes=["read", "write"])
    url = path.format(id=plain.record.id)
    forbidden = await client.request(method, url, json=body, headers=key_header(plain.plaintext))
    assert_problem(forbidden, 403, "FORBIDDEN")
    assert_problem(await client.request(method, url, json=body), 401, "MISSING_KEY")


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("PATCH", "", {"name": "y"}),
        ("DELETE", "", None),
        ("POST", "/rotate", None),
    ],
)
async def test_admin_unknown_and_bad_ids(
    client: httpx.AsyncClient, admin_key: str, method: str, suffix: str, body: object
) -> None:
    admin = key_header(admin_key)
    unknown = await client.request(
        method, f"/v1/admin/keys/{uuid.uuid4()}{suffix}", json=body, headers=admin
    )
    assert_problem(unknown, 404, "NOT_FOUND")
    for bad_id in ("not-a-uuid", "1234", "00000000-0000-0000-0000-00000000000g"):
        response = await client.request(
            method, f"/v1/admin/keys/{bad_id}{suffix}", json=body, headers=admin
        )
        assert_problem(response, 422, "VALIDATION_ERROR")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "", {"name": "x", "rate_limit": "100/week"}),
        ("POST", "", {"name": "x", "rate_limit": "0/minute"}),
        ("POST", "", {"name": "x", "expires_in": "forever"}),
        ("POST", "", {"name": "x", "scopes": ["Not A Scope"]}),
        ("POST", "", {"name": ""}),
        ("POST", "", {"owner": "nobody"}),
        ("POST", "", {"name": "x", "unexpected": True}),
        ("PATCH", "/{id}", {"rate_limit": "lots"}),
        ("PATCH", "/{id}", {"rate_limit": "1.5/second"}),
        ("PATCH", "/{id}", {"rate_limits": ["1/second", "lots"]}),
        ("PATCH", "/{id}", {"rate_limits": ["1/second", "2/second"]}),
        ("PATCH", "/{id}", {"rate_limits": [f"{n}/day" for n in range(1, 10)]}),
        ("PATCH", "/{id}", {"rate_limits": ["1/second"], "rate_limit": "1/second"}),
        ("POST", "", {"name": "x", "rate_limits": ["1/minute", "2/minute shadow", "3/minutes"]}),
        ("PATCH", "/{id}", {"key_hash": "0" * 64}),
        ("POST", "/{id}/rotate", {"grace": "a while"}),
    ],
)
async def test_admin_bad_input_is_422(
    client: httpx.AsyncClient,
    admin_key: str,
    database: Database,
    settings: Settings,
    method: str,
    path: str,
    body: dict[str, object],
) -> None:
    target = await create_key(database, settings, rate_limit="3/second")
    url = "/v1/admin/keys" + path.format(id=target.record.id)
    response = await client.request(method, url, json=body, headers=key_header(admin_key))
    assert_problem(response, 422, "VALIDATION_ERROR")
    shown = await client.get(f"/v1/admin/keys/{target.record.id}", headers=key_header(admin_key))
    assert (shown.json()["rate_limits"], shown.json()["revoked_at"]) == (["3/second"], None)


async def test_cli_revoke_is_seen_within_a_second(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    key = await create_key(database, settings)
    watcher = asyncio.create_task(_first_refusal(client, key.plaintext))
    revoked = await run_cli(settings, "keys", "revoke", str(key.record.id))
    assert revoked.returncode == 0, revoked.stderr
    revoked_at = time.monotonic()
    assert await watcher - revoked_at < 1.0


async def _first_refusal(client: httpx.AsyncClient, key: str) -> float:
    """Call whoami every 20 ms, which keeps the key in the app's cache, until the key is refused
    as REVOKED; return when that happened. The deadline only bounds a broken run: the caller
    measures from the moment its revoke returned (a CLI start can take seconds on a busy host)."""
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        response = await client.get("/v1/whoami", headers=key_header(key))
        if response.status_code != 200:
            refused_at = time.monotonic()
            assert_problem(response, 401, "REVOKED")
            return refused_at
        await asyncio.sleep(0.02)
    raise AssertionError("the revoke was not seen within 60 s")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/admin/keys?owner=%00", None),
        ("POST", "/v1/admin/keys", {"name": "a\u0000b"}),
        ("POST", "/v1/admin/keys", {"name": "ok", "owner": "\u0000"}),
    ],
)
async def test_a_nul_character_is_a_validation_error_and_stores_nothing(
    client: httpx.AsyncClient,
    admin_key: str,
    database: Database,
    method: str,
    path: str,
    body: dict[str, str] | None,
) -> None:
    """PostgreSQL cannot hold NUL in text: whichever field carries it, the client gets a 4xx."""
    before = await _key_count(database)
    response = await client.request(method, path, json=body, headers=key_header(admin_key))
    assert_problem(response, 422, "VALIDATION_ERROR")
    assert await _key_count(database) == before


async def _key_count(database: Database) -> int:
    async with database.get_session() as session:
        return int(await session.scalar(text("SELECT count(*) FROM api_keys")) or 0)
