"""Hostile clients against real `gatekey serve` workers: oversized bodies and headers, floods of
forged keys, identities that must not break a header or the CLI, Host tricks, two credentials
in one request, and documentation pages that load nothing from outside."""

from __future__ import annotations

import re
import socket
from collections import Counter
from collections.abc import AsyncIterator
from urllib.parse import unquote, urlsplit

import httpx
import pytest

from service.config import Settings
from service.db import Database
from service.harness.processes import HOST
from tests.factories import (
    assert_problem,
    create_key,
    key_header,
    malformed_keys,
    run_cli,
    unique_owner,
    unknown_key,
)
from tests.integration.servers import Clients, ServeProcess, fire, serve_settings, serving

FAILED_LIMIT = 5
MAX_BODY = 65_536
FLOOD = 1000


@pytest.fixture(scope="module")
def serve_overrides() -> dict[str, object]:
    # Loopback is the trusted proxy: each test names its own client in X-Forwarded-For.
    return {"trusted_proxies": "127.0.0.1", "failed_verification_limit": f"{FAILED_LIMIT}/hour"}


@pytest.fixture
async def client(server: ServeProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        yield http


@pytest.fixture(scope="module")
async def admin_key(server: ServeProcess, database: Database) -> str:
    issued = await create_key(database, server.settings, name="hardening admin", scopes=["admin"])
    return issued.plaintext


def from_address(address: str, key: str | None = None) -> dict[str, str]:
    headers = {"X-Forwarded-For": address}
    return {**headers, **key_header(key)} if key else headers


def problem_body(status: int, code: str, detail: str) -> dict[str, object]:
    return {
        "type": f"urn:gatekey:problem:{code.lower().replace('_', '-')}",
        "title": code.replace("_", " ").capitalize(),
        "status": status,
        "detail": detail,
        "code": code,
    }


# Row 1: sizes.


async def test_a_declared_body_over_the_cap_is_413_before_it_is_read(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/v1/admin/keys", content=b"x" * (MAX_BODY + 1), headers={"Content-Type": "text/plain"}
    )
    assert_problem(response, 413, "PAYLOAD_TOO_LARGE")
    assert response.json() == problem_body(
        413, "PAYLOAD_TOO_LARGE", f"the request body is larger than {MAX_BODY} bytes"
    )


async def test_a_chunked_body_is_cut_off_at_the_cap(
    client: httpx.AsyncClient, admin_key: str
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(64):  # 1 MiB in all, without a Content-Length
            yield b"{" + b" " * 16_382 + b"}"

    response = await client.post(
        "/v1/admin/keys",
        content=chunks(),
        headers={**key_header(admin_key), "Content-Type": "application/json"},
    )
    assert_problem(response, 413, "PAYLOAD_TOO_LARGE")
    assert response.json()["detail"] == f"the request body is larger than {MAX_BODY} bytes"


async def test_a_body_under_the_cap_is_served(client: httpx.AsyncClient, admin_key: str) -> None:
    owner = unique_owner("sized")
    body = {"name": "n" * 200, "owner": owner, "scopes": ["read"]}
    response = await client.post("/v1/admin/keys", json=body, headers=key_header(admin_key))
    assert response.status_code == 201, response.text
    assert response.json()["owner"] == owner


async def test_headers_over_the_cap_are_431(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/whoami", headers={"X-Padding": "a" * 20_000})
    assert_problem(response, 431, "HEADERS_TOO_LARGE")
    assert response.json()["detail"] == ("the request line and headers are larger than 16384 bytes")


# Row 2: forged keys.


async def test_failed_verifications_past_the_limit_are_429_per_client_address(
    client: httpx.AsyncClient, server: ServeProcess, database: Database
) -> None:
    valid = await create_key(database, server.settings, name="bystander")
    attacker = "203.0.113.7"
    statuses = []
    for _ in range(FAILED_LIMIT):
        response = await client.get(
            "/v1/auth", headers=from_address(attacker, unknown_key(server.settings))
        )
        statuses.append((response.status_code, response.json()["code"]))
    assert statuses == [(401, "NOT_FOUND")] * FAILED_LIMIT
    refused = await client.get(
        "/v1/whoami", headers=from_address(attacker, unknown_key(server.settings))
    )
    body = assert_problem(refused, 429, "TOO_MANY_FAILED_VERIFICATIONS")
    assert body["detail"] == "too many failed key verifications from this address; retry later"
    assert 1 <= int(refused.headers["Retry-After"]) <= 3600 // FAILED_LIMIT
    # The same address is refused on every key-taking endpoint, before any lookup...
    usage = await client.get("/v1/usage", headers=from_address(attacker, valid.plaintext))
    assert_problem(usage, 429, "TOO_MANY_FAILED_VERIFICATIONS")
    # ... but not on /v1/keys/verify, whose caller is a service checking its users' keys.
    verify = await client.post(
        "/v1/keys/verify", json={"key": valid.plaintext}, headers=from_address(attacker)
    )
    assert verify.json()["code"] == "VALID", verify.text
    # Another client is not: its valid key is admitted, its first unknown key is a plain 401.
    bystander = await client.get(
        "/v1/whoami", headers=from_address("198.51.100.1", valid.plaintext)
    )
    assert bystander.status_code == 200, bystander.text
    other = await client.get(
        "/v1/auth", headers=from_address("198.51.100.1", unknown_key(server.settings))
    )
    assert_problem(other, 401, "NOT_FOUND")


async def test_malformed_keys_cost_no_lookup_and_are_not_counted(
    client: httpx.AsyncClient, server: ServeProcess
) -> None:
    codes: Counter[tuple[int, str]] = Counter()
    for _ in range(3):
        for key in malformed_keys(server.settings).values():
            response = await client.get("/v1/auth", headers=from_address("203.0.113.8", key))
            codes[(response.status_code, response.json()["code"])] += 1
    assert codes == {(401, "MALFORMED"): 15}


async def test_a_flood_of_forged_keys_never_evicts_valid_ones_nor_fills_the_pool(
    client: httpx.AsyncClient, server: ServeProcess, database: Database
) -> None:
    valid = await create_key(database, server.settings, name="under flood")
    assert (await client.get("/v1/whoami", headers=key_header(valid.plaintext))).status_code == 200
    forged = [unknown_key(server.settings) for _ in range(FLOOD)]
    async with Clients(server.url, connections=20) as flood:
        # Each forged key from an address of its own: the per-address limit never trips, so
        # every one of them reaches the cache, the directory and PostgreSQL.
        outcomes = await fire(
            lambda i: flood[i].get(
                "/v1/auth", headers=from_address(f"10.{i // 250}.{i % 250}.1", forged[i])
            ),
            FLOOD,
            concurrency=20,
            bound_s=300,
        )
    assert Counter(o.status for o in outcomes) == {401: FLOOD}
    scrape = (await client.get("/metrics")).text
    assert _sample(scrape, "gatekey_db_pool_timeouts_total") == 0
    still = await client.get("/v1/whoami", headers=key_header(valid.plaintext))
    assert still.status_code == 200, still.text


def _sample(scrape: str, name: str) -> float:
    values = [float(m) for m in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", scrape, re.M)]
    return sum(values)


# Row 3: identities in headers.


async def test_unicode_owners_reach_the_header_reversibly(
    client: httpx.AsyncClient, server: ServeProcess, database: Database
) -> None:
    owners = {}
    for owner in ("акме", "ёжик", "100% ACME"):
        issued = await create_key(database, server.settings, name="unicode", owner=owner)
        response = await client.get("/v1/auth", headers=key_header(issued.plaintext))
        assert response.status_code == 200, response.text
        owners[owner] = response.headers["X-Gatekey-Owner"]
    assert owners == {
        "акме": "%D0%B0%D0%BA%D0%BC%D0%B5",
        "ёжик": "%D1%91%D0%B6%D0%B8%D0%BA",
        "100% ACME": "100%25 ACME",
    }
    assert {unquote(value) for value in owners.values()} == set(owners)


@pytest.mark.parametrize("field", ["name", "owner"])
@pytest.mark.parametrize("text", ["acme\nX-Injected: 1", "a\x00b", "bidi\u202eevil"])
async def test_unprintable_identities_are_refused_on_create_and_update(
    client: httpx.AsyncClient, admin_key: str, field: str, text: str
) -> None:
    headers = key_header(admin_key)
    created = await client.post("/v1/admin/keys", json={"name": "n", field: text}, headers=headers)
    body = assert_problem(created, 422, "VALIDATION_ERROR")
    assert body["detail"].startswith(f"{field} must be printable text: U+")
    key = await client.post("/v1/admin/keys", json={"name": "clean"}, headers=headers)
    updated = await client.patch(
        f"/v1/admin/keys/{key.json()['id']}", json={field: text}, headers=headers
    )
    assert_problem(updated, 422, "VALIDATION_ERROR")


async def test_the_cli_refuses_an_unprintable_owner_in_one_line(server: ServeProcess) -> None:
    result = await run_cli(server.settings, "keys", "create", "--name", "n", "--owner", "a\nb")
    assert result.returncode == 2
    assert result.stderr_lines == [
        "error: owner must be printable text: U+000A (Cc) is not allowed (VALIDATION_ERROR)"
    ]


# Row 6: user values in CLI output.


async def test_markup_in_a_key_name_is_printed_as_it_is(
    server: ServeProcess, database: Database
) -> None:
    owner = unique_owner("[bold]markup")
    await create_key(database, server.settings, name="[/bold]", owner=owner)
    await create_key(database, server.settings, name="[red]x[/red] [link=http://e]", owner=owner)
    result = await run_cli(server.settings, "keys", "list", "--owner", owner)
    assert result.returncode == 0, result.stderr
    assert "[/bold]" in result.stdout
    assert "[red]x[/red] [link=http://e]" in result.stdout
    assert owner in result.stdout
    bad_id = await run_cli(server.settings, "keys", "show", "[/red]")
    assert bad_id.returncode == 2
    assert bad_id.stderr_lines[0].startswith("error: invalid key id '[/red]'")


# Row 7: Host tricks.


async def test_no_redirect_is_built_from_the_host_header(
    client: httpx.AsyncClient, admin_key: str
) -> None:
    headers = {**key_header(admin_key), "Host": "evil.example"}
    for path in ("/v1/admin/keys/", "/v1/whoami/", "/docs/"):
        response = await client.get(path, headers=headers)
        assert "location" not in response.headers
        assert response.json() == problem_body(404, "NOT_FOUND", "Not Found"), path


# Row 9: two credentials.


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/whoami"),
        ("GET", "/v1/auth"),
        ("GET", "/v1/usage"),
        ("GET", "/v1/admin/keys"),
        ("POST", "/v1/admin/keys"),
    ],
)
async def test_two_different_keys_are_400_and_the_same_key_twice_is_fine(
    client: httpx.AsyncClient, admin_key: str, server: ServeProcess, method: str, path: str
) -> None:
    other = unknown_key(server.settings)
    two = {"X-API-Key": admin_key, "Authorization": f"Bearer {other}"}
    body = {"name": "two keys"} if method == "POST" else None
    response = await client.request(method, path, headers=two, json=body)
    assert response.json() == problem_body(
        400,
        "CONFLICTING_CREDENTIALS",
        "the request carries two different keys (X-API-Key, Authorization: Bearer): send one",
    )
    assert response.headers["content-type"] == "application/problem+json"
    same = {"X-API-Key": admin_key, "Authorization": f"Bearer {admin_key}"}
    again = await client.request(method, path, headers=same, json=body)
    assert again.status_code in (200, 201), again.text


# Row 10: documentation pages.


async def test_docs_load_nothing_from_outside(client: httpx.AsyncClient) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources, page.text
    for source in sources:
        assert not urlsplit(source).netloc, f"{source} is loaded from another host"
        asset = await client.get(source)
        assert asset.status_code == 200, source
    redoc = await client.get("/redoc")
    assert redoc.status_code == 200
    assert "cdn" not in redoc.text.lower()


async def test_docs_can_be_switched_off(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:

    off = serve_settings(settings, docs_enabled=False)
    with serving(off, tmp_path_factory.mktemp("nodocs"), workers=1) as running:
        async with httpx.AsyncClient(base_url=running.url) as http:
            for path in ("/docs", "/redoc", "/openapi.json"):
                assert_problem(await http.get(path), 404, "NOT_FOUND")
            assert (await http.get("/healthz")).status_code == 200


def test_headers_of_a_raw_request_cannot_smuggle_a_second_key(server: ServeProcess) -> None:
    """Same as the parametrized test, over a raw socket with the headers folded by hand."""
    port = int(server.url.rsplit(":", 1)[1])
    request = (
        b"GET /v1/whoami HTTP/1.1\r\nHost: x\r\nX-API-Key: gk_a\r\nX-API-Key: gk_b\r\n"
        b"Connection: close\r\n\r\n"
    )
    with socket.create_connection((HOST, port), timeout=10) as raw:
        raw.sendall(request)
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b'"code":"CONFLICTING_CREDENTIALS"' in answer
