"""Forward-auth with required scopes, in-process: `/v1/auth` (query, header, any method, any
path below it), `POST /v1/keys/verify` with `required_scopes`, the RateLimit headers of each."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from service.config import Settings
from service.db import Database
from tests.factories import assert_problem, create_key, key_header, unique_owner

RATELIMIT_FIELDS = {"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "ratelimit"}


@pytest.fixture(scope="module")
def client(api: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    return api[1]


def _remaining(response: httpx.Response) -> int:
    assert set(response.headers) >= RATELIMIT_FIELDS, response.headers
    return int(response.headers["ratelimit-remaining"])


async def test_auth_with_the_scopes_answers_200_with_identity_and_scopes(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    owner = unique_owner()
    issued = await create_key(
        database, settings, owner=owner, scopes=["write", "read"], rate_limit="10/minute"
    )
    headers = key_header(issued.plaintext)
    answers = [
        await client.get("/v1/auth?scope=read", headers=headers),
        await client.get("/v1/auth?scope=read&scope=write", headers=headers),
        await client.get("/v1/auth?scope=read,write", headers=headers),
        await client.get("/v1/auth", headers={**headers, "X-Gatekey-Required-Scopes": "write"}),
        await client.get("/v1/auth", headers=headers),
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert answer.content == b""
        assert answer.headers["x-gatekey-key-id"] == str(issued.record.id)
        assert answer.headers["x-gatekey-owner"] == owner
        assert answer.headers["x-gatekey-scopes"] == "read,write"
        assert "retry-after" not in answer.headers
    assert [_remaining(answer) for answer in answers] == [9, 8, 7, 6, 5]


async def test_a_missing_scope_is_403_and_spends_a_unit_of_the_limit(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    issued = await create_key(database, settings, scopes=["read"], rate_limit="3/minute")
    headers = key_header(issued.plaintext)
    first = await client.get("/v1/auth?scope=read,write", headers=headers)
    body = assert_problem(first, 403, "FORBIDDEN")
    assert body["detail"] == "this key lacks the scope(s) write"
    assert (_remaining(first), first.headers["ratelimit-limit"]) == (2, "3")
    assert "retry-after" not in first.headers
    assert "x-gatekey-key-id" not in first.headers
    by_header = await client.get(
        "/v1/auth", headers={**headers, "X-Gatekey-Required-Scopes": "admin, billing"}
    )
    assert assert_problem(by_header, 403, "FORBIDDEN")["detail"] == (
        "this key lacks the scope(s) admin, billing"
    )
    assert _remaining(by_header) == 1
    assert _remaining(await client.get("/v1/auth?scope=read", headers=headers)) == 0
    # Over the limit, a forbidden request is told to wait like any other.
    limited = await client.get("/v1/auth?scope=write", headers=headers)
    assert_problem(limited, 429, "RATE_LIMITED")
    assert _remaining(limited) == 0
    assert int(limited.headers["retry-after"]) >= 1


async def test_query_and_header_add_up(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    issued = await create_key(database, settings, scopes=["read"])
    response = await client.get(
        "/v1/auth?scope=read",
        headers={**key_header(issued.plaintext), "X-Gatekey-Required-Scopes": "write"},
    )
    assert (
        assert_problem(response, 403, "FORBIDDEN")["detail"] == "this key lacks the scope(s) write"
    )


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
async def test_any_method_and_any_path_below_auth(
    client: httpx.AsyncClient, database: Database, settings: Settings, method: str
) -> None:
    issued = await create_key(database, settings, scopes=["read"])
    headers = key_header(issued.plaintext)
    for path in ("/v1/auth", "/v1/auth/", "/v1/auth/orders/42", "/v1/auth/a/b/c"):
        response = await client.request(method, path, headers=headers)
        assert response.status_code == 200, (path, response.text)
        assert response.headers["x-gatekey-key-id"] == str(issued.record.id)
    missing = await client.request(method, "/v1/auth/orders")
    if method == "HEAD":  # no body to a HEAD
        assert (missing.status_code, missing.content) == (401, b"")
    else:
        assert_problem(missing, 401, "MISSING_KEY")


async def test_below_auth_the_query_is_the_original_requests_and_not_read(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    issued = await create_key(database, settings, scopes=["read"])
    headers = key_header(issued.plaintext)
    passed = await client.get("/v1/auth/search?scope=admin&q=x", headers=headers)
    assert passed.status_code == 200, passed.text
    refused = await client.get(
        "/v1/auth/search?scope=read",
        headers={**headers, "X-Gatekey-Required-Scopes": "admin"},
    )
    assert (
        assert_problem(refused, 403, "FORBIDDEN")["detail"] == "this key lacks the scope(s) admin"
    )


@pytest.mark.parametrize(
    ("query", "header"),
    [
        ("scope=Read", ""),
        ("scope=no%20spaces", ""),
        ("scope=" + "a" * 65, ""),
        ("", "read,\u00e9"),
        ("scope=" + ",".join(f"s{i}" for i in range(21)), ""),
    ],
)
async def test_a_bad_required_scope_is_422(
    client: httpx.AsyncClient, database: Database, settings: Settings, query: str, header: str
) -> None:
    issued = await create_key(database, settings, scopes=["read"])
    headers = [("X-API-Key", issued.plaintext)]
    if header:
        headers.append(("X-Gatekey-Required-Scopes", header))
    response = await client.get(
        f"/v1/auth?{query}", headers=[(k.encode(), v.encode("latin-1")) for k, v in headers]
    )
    assert_problem(response, 422, "VALIDATION_ERROR")


async def test_verify_with_required_scopes(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    owner = unique_owner()
    issued = await create_key(
        database, settings, owner=owner, scopes=["read"], rate_limit="5/minute"
    )
    key_id = str(issued.record.id)
    ok = await client.post(
        "/v1/keys/verify", json={"key": issued.plaintext, "required_scopes": ["read"]}
    )
    assert (ok.status_code, ok.json()["valid"], ok.json()["code"]) == (200, True, "VALID")
    refused = await client.post(
        "/v1/keys/verify", json={"key": issued.plaintext, "required_scopes": ["read", "write"]}
    )
    assert refused.status_code == 200
    assert refused.json() == {
        "valid": False,
        "code": "FORBIDDEN",
        "key_id": key_id,
        "owner": owner,
        "scopes": ["read"],
        "metadata": {},
        "ratelimit": {"limit": 5, "remaining": 3, "reset": refused.json()["ratelimit"]["reset"]},
        "credits_remaining": None,
    }
    assert _remaining(refused) == 3
    bad = await client.post(
        "/v1/keys/verify", json={"key": issued.plaintext, "required_scopes": ["Not A Scope"]}
    )
    assert_problem(bad, 422, "VALIDATION_ERROR")
