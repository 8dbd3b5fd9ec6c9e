"""gatekey behind a real nginx: `auth_request` to `gatekey serve --workers 2`, in front of an
upstream that echoes the headers it received. The nginx config is the one the docs ship
(`deploy/nginx/gatekey.conf.template`), rendered as they say. Also: 403s on admin routes are
counted as FORBIDDEN in the key-check metrics of the real workers."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from string import Template

import httpx
import pytest

from service.config import Settings
from service.db import Database
from service.harness.processes import (
    HOST,
    ServerProcess,
    free_port,
    port_accepts,
    serving,
    wait_until_async,
)
from tests.factories import TESTS_DIR, assert_problem, create_key, key_header, unique_owner
from tests.integration.servers import ServeProcess

REPOSITORY = TESTS_DIR.parent
TEMPLATE = REPOSITORY / "deploy" / "nginx" / "gatekey.conf.template"
DOCS = REPOSITORY / "docs" / "gateways.md"
VERIFICATIONS = "gatekey_key_verifications_total"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


class EchoHandler(BaseHTTPRequestHandler):
    """Answers every request 200 with the headers it received, as a JSON list of pairs."""

    protocol_version = "HTTP/1.1"  # keep-alive, as nginx's upstream block uses it

    def _echo(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps([[name.lower(), value] for name, value in self.headers.items()])
        encoded = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(encoded)))
        self.end_headers()
        self.wfile.write(encoded)

    do_GET = do_POST = do_PUT = do_DELETE = _echo  # noqa: N815  # http.server's handler names

    def log_message(self, format: str, *args: object) -> None:  # its signature
        """Quiet: pytest shows no request log of the stub."""


@pytest.fixture(scope="module")
def upstream() -> Iterator[int]:
    """The echoing upstream on a free loopback port, on a thread; its port."""
    httpd = ThreadingHTTPServer((HOST, 0), EchoHandler)
    thread = threading.Thread(target=httpd.serve_forever, name="echo-upstream", daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


def render_config(gatekey_port: int, upstream_port: int, listen_port: int) -> str:
    """The shipped template with its three names filled in, as envsubst would."""
    return Template(TEMPLATE.read_text()).safe_substitute(
        GATEKEY_ADDR=f"{HOST}:{gatekey_port}",
        UPSTREAM_ADDR=f"{HOST}:{upstream_port}",
        LISTEN_ADDR=f"{HOST}:{listen_port}",
    )


def _main_config(prefix: Path) -> str:
    """The `nginx.conf` around the shipped snippet: foreground, files under `prefix` only."""
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
    temp = " ".join(
        f"{kind}_temp_path {prefix / 'tmp' / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""
daemon off;
{user}
worker_processes 1;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    {temp}
    include {prefix / "gatekey.conf"};
}}
"""


@dataclass(frozen=True, slots=True)
class Gateway:
    nginx: ServerProcess
    gatekey: ServeProcess

    @property
    def url(self) -> str:
        return self.nginx.url


@pytest.fixture(scope="module")
def gateway(
    server: ServeProcess, upstream: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """nginx with the shipped config in front of `server` and the upstream; stopped by pid."""
    prefix = tmp_path_factory.mktemp("nginx")
    (prefix / "tmp").mkdir()
    port = free_port()
    (prefix / "gatekey.conf").write_text(render_config(server.port, upstream, port))
    (prefix / "nginx.conf").write_text(_main_config(prefix))
    command = [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", "stderr"]
    with serving(
        command,
        port=port,
        log=prefix / "nginx.log",
        ready=lambda running: port_accepts(running.port),
    ) as nginx:
        yield Gateway(nginx, server)


def _received(response: httpx.Response) -> dict[str, list[str]]:
    """The headers the upstream received, by lower-case name."""
    received: dict[str, list[str]] = {}
    for name, value in response.json():
        received.setdefault(name, []).append(value)
    return received


def test_the_docs_ship_the_tested_config() -> None:
    assert TEMPLATE.read_text().strip() in DOCS.read_text()


async def test_a_key_with_the_scope_reaches_the_upstream_with_its_identity(
    gateway: Gateway, database: Database, settings: Settings
) -> None:
    owner = unique_owner("nginx")
    issued = await create_key(
        database, settings, owner=owner, scopes=["read", "write"], rate_limit="100/minute"
    )
    forged = {
        "X-Gatekey-Key-Id": "00000000-0000-0000-0000-000000000000",
        "X-Gatekey-Owner": "someone else",
        "X-Gatekey-Scopes": "admin",
        "X-Gatekey-Required-Scopes": "",
    }
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        response = await client.get(
            "/api/orders?x=1", headers={**key_header(issued.plaintext), **forged}
        )
    assert response.status_code == 200, response.text
    received = _received(response)
    assert received["x-gatekey-key-id"] == [str(issued.record.id)]
    assert received["x-gatekey-owner"] == [owner]
    assert received["x-gatekey-scopes"] == ["read,write"]
    assert "x-gatekey-required-scopes" not in received
    assert "x-api-key" not in received
    assert (response.headers["ratelimit-limit"], response.headers["ratelimit-remaining"]) == (
        "100",
        "99",
    )


async def test_without_a_key_401_and_nothing_reaches_the_upstream(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        response = await client.get("/api/orders", headers={"X-Gatekey-Key-Id": "forged"})
        unknown = await client.get("/api/orders", headers=key_header("gk_notakey"))
    assert response.status_code == 401
    assert "x-gatekey-key-id" not in response.text
    assert unknown.status_code == 401


async def test_without_the_scope_403_with_the_limit_state(
    gateway: Gateway, database: Database, settings: Settings
) -> None:
    issued = await create_key(database, settings, scopes=["write"], rate_limit="10/minute")
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        response = await client.get("/api/orders", headers=key_header(issued.plaintext))
    assert response.status_code == 403
    assert (response.headers["ratelimit-limit"], response.headers["ratelimit-remaining"]) == (
        "10",
        "9",
    )


async def test_past_the_limit_429_with_retry_after(
    gateway: Gateway, database: Database, settings: Settings
) -> None:
    issued = await create_key(database, settings, scopes=["read"], rate_limit="3/minute")
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        statuses = []
        for _ in range(5):
            response = await client.get("/api/x", headers=key_header(issued.plaintext))
            statuses.append(response.status_code)
    assert statuses == [200, 200, 200, 429, 429]
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert (response.headers["ratelimit-limit"], response.headers["ratelimit-remaining"]) == (
        "3",
        "0",
    )


def _verifications(server: ServeProcess, result: str) -> float:
    return sum(server.counts_by_pid(VERIFICATIONS, result=result).values())


async def _counted(server: ServeProcess, result: str, expected: float) -> float:
    """The count once the workers' files show `expected` (counted as the handler ends)."""
    await wait_until_async(
        lambda: _verifications(server, result) >= expected, what=f"{result} counted", timeout_s=30
    )
    return _verifications(server, result)


async def test_403_on_admin_routes_counts_as_forbidden_not_valid(
    server: ServeProcess, database: Database, settings: Settings
) -> None:
    plain = await create_key(database, settings, scopes=["read"])
    admin = await create_key(database, settings, scopes=["admin"])
    forbidden_before = _verifications(server, "FORBIDDEN")
    valid_before = _verifications(server, "VALID")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        refused = [
            await client.get("/v1/admin/keys", headers=key_header(plain.plaintext)),
            await client.post(
                "/v1/admin/keys",
                json={"name": "x", "scopes": ["admin"]},
                headers=key_header(admin.plaintext),
            ),
            await client.get("/v1/auth?scope=write", headers=key_header(plain.plaintext)),
        ]
        allowed = await client.get("/v1/admin/audit", headers=key_header(admin.plaintext))
    for response in refused:
        assert_problem(response, 403, "FORBIDDEN")
    assert allowed.status_code == 200
    assert await _counted(server, "FORBIDDEN", forbidden_before + 3) == forbidden_before + 3
    assert await _counted(server, "VALID", valid_before + 1) == valid_before + 1
