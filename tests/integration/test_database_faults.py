"""`gatekey serve` when PostgreSQL fails under load: the server restarted, the service's backends
terminated, clients that hang up mid-request. Minutes of load: marker `faults` (`make
test-faults`)."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import make_url, text

from service.config import Settings
from service.db import Database, migrations
from tests.factories import assert_problem, create_key, key_header, unique_owner, unknown_key
from tests.integration.postgres import OwnPostgres, own_postgres
from tests.integration.servers import (
    Clients,
    Outcome,
    ServeProcess,
    fire_until,
    scrape,
    serve_settings,
    serving,
)

pytestmark = pytest.mark.faults

# A fast host sends more than the default 1,000 a minute: the limit is not what these test.
UNLIMITED = "1000000/minute"

KEYS = "/v1/admin/keys"
CHECKED_OUT = "gatekey_db_pool_checked_out"
POOL_TIMEOUTS = "gatekey_db_pool_timeouts_total"
# Within this of PostgreSQL accepting again, requests succeed again (the figure).
RECOVERED_WITHIN_S = 5.0
# Checked-out connections and `idle in transaction` backends back to 0 within this.
SETTLED_WITHIN_S = 5.0


async def _service_backends(database: Database, settings: Settings, state: str = "%") -> int:
    """The serving workers' backends (application_name `gatekey`) on the test database."""
    async with database.engine.connect() as connection:
        count = await connection.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'gatekey' "
                "AND datname = :name AND coalesce(state, '') LIKE :state"
            ),
            {"name": make_url(settings.database_url).database, "state": state},
        )
    return int(count or 0)


def _statuses(outcomes: list[Outcome]) -> Counter[int | None]:
    return Counter(o.status for o in outcomes)


# --- PostgreSQL restarted under load -------------------------------------------------------


@pytest.fixture(scope="module")
def restartable(settings: Settings) -> Iterator[tuple[OwnPostgres, Settings]]:
    """A PostgreSQL cluster of this module's own, migrated: the test restarts it."""
    with own_postgres() as cluster:
        url = make_url(cluster.url).set(database="gatekey_restart")
        own = settings.model_copy(
            update={"database_url": url.render_as_string(hide_password=False)}
        )
        migrations.upgrade(own)
        yield cluster, own


async def test_postgresql_restart_costs_only_503s_and_loses_no_created_key(
    restartable: tuple[OwnPostgres, Settings], tmp_path: Path
) -> None:
    cluster, own = restartable
    database = Database(own, application_name="gatekey-tests")
    try:
        admin = await create_key(
            database, own, name="restart admin", scopes=["admin"], rate_limit=UNLIMITED
        )
        with serving(serve_settings(own), tmp_path, workers=2) as server:
            outcomes, accepting_at = await _load_through_restart(server, cluster, admin.plaintext)
        created = [
            uuid.UUID(o.response.json()["id"]) for o in outcomes if o.response and o.status == 201
        ]
        statuses = _statuses(outcomes)
        errors = Counter(repr(o.error) for o in outcomes if o.error is not None)
        assert set(statuses) <= {201, 503}, (statuses, errors)
        assert statuses[503] > 0, "the restart was not seen"
        for outcome in outcomes:
            if outcome.status == 503:
                assert outcome.response is not None
                assert_problem(outcome.response, 503, "DATABASE_UNAVAILABLE")
                assert outcome.response.headers["Retry-After"] == "1"
        # Requests that start after PostgreSQL accepts again succeed within 5 s.
        after = [o for o in outcomes if o.started_at >= accepting_at and o.status == 201]
        assert after, statuses
        first = min(o.started_at + o.elapsed_s for o in after) - accepting_at
        assert first <= RECOVERED_WITHIN_S, f"first success {first:.2f} s after accepting"
        async with database.get_session() as session:
            stored = await session.scalar(
                text("SELECT count(*) FROM api_keys WHERE id = ANY(:ids)"), {"ids": created}
            )
        assert stored == len(created)
        print(f"restart: {dict(statuses)}, first success {first:.2f} s after accepting")  # noqa: T201
    finally:
        await database.dispose()


async def _load_through_restart(
    server: ServeProcess, cluster: OwnPostgres, admin: str
) -> tuple[list[Outcome], float]:
    """50 users creating keys; `pg_ctl restart -m fast` after 2 s; the load goes on 8 s after
    PostgreSQL accepts again. The outcomes, and when it accepted (`pg_ctl -w` returned)."""
    stop = asyncio.Event()
    headers = key_header(admin)
    async with Clients(server.url, connections=50) as clients:
        load = asyncio.create_task(
            fire_until(
                lambda i: clients[i].post(KEYS, json={"name": f"k{i}"}, headers=headers),
                stop,
                concurrency=50,
                bound_s=120,
            )
        )
        await asyncio.sleep(2.0)
        await asyncio.to_thread(cluster.pg_ctl, "restart", "-m", "fast")
        accepting_at = time.monotonic()
        await asyncio.sleep(8.0)
        stop.set()
        return await load, accepting_at


# --- the service's backends terminated under load ---------------------------------------------

TERMINATIONS = 3
# After the last termination, the load goes on this long with no 503 and no pool timeout. A
# broken connection left in a pool would fail at its next checkout: with 20 users on two
# pools of 7 every connection is checked out many times a second, so 20 s (rather than the
# issue's minute) already covers hundreds of checkouts of each.
AFTER_TERMINATION_S = 20.0


async def _terminate_busy_backends(database: Database, settings: Settings) -> int:
    """Terminate the service's checked-out connections: running a statement, or between two of
    one transaction; the count terminated."""
    async with database.engine.connect() as connection:
        terminated = await connection.scalar(
            text(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = 'gatekey' AND datname = :name "
                "AND state IN ('active', 'idle in transaction')"
            ),
            {"name": make_url(settings.database_url).database},
        )
    return int(terminated or 0)


async def test_terminated_backends_are_never_reused_and_no_pool_times_out(
    server: ServeProcess, database: Database
) -> None:
    admin = await create_key(
        database, server.settings, name="terminations", scopes=["admin"], rate_limit=UNLIMITED
    )
    owner = unique_owner("terminated")
    headers = key_header(admin.plaintext)
    stop = asyncio.Event()
    terminated: list[tuple[float, int]] = []
    async with Clients(server.url, connections=20) as clients:
        before = await scrape(clients[0])

        def send(i: int) -> Awaitable[httpx.Response]:
            if i % 2:
                return clients[i].get(KEYS, params={"owner": owner}, headers=headers)
            return clients[i].post(KEYS, json={"name": f"t{i}", "owner": owner}, headers=headers)

        load = asyncio.create_task(fire_until(send, stop, concurrency=20, bound_s=120))
        await asyncio.sleep(2.0)
        for _ in range(TERMINATIONS):
            count = await _terminate_busy_backends(database, server.settings)
            terminated.append((time.monotonic(), count))
            await asyncio.sleep(1.0)
        await asyncio.sleep(AFTER_TERMINATION_S)
        stop.set()
        outcomes = await load
        after = await scrape(clients[0])
    statuses = _statuses(outcomes)
    assert set(statuses) <= {200, 201, 503}, statuses
    killed = sum(count for _, count in terminated)
    assert killed > 0, "no busy backend was found to terminate"
    # Each terminated backend costs at most the one request it was serving...
    assert statuses[503] <= killed, (statuses, terminated)
    # ...and once the last one is gone (its request given a second to answer), nothing fails.
    last = terminated[-1][0] + 1.0
    late = Counter(o.status for o in outcomes if o.started_at > last)
    assert set(late) <= {200, 201}, late
    assert after.total(POOL_TIMEOUTS) == before.total(POOL_TIMEOUTS)
    print(f"terminated {killed} busy backends: {dict(statuses)}")  # noqa: T201


# --- clients that hang up -----------------------------------------------------------------------

ABANDONED = 2000
HANG_UP_CONCURRENCY = 50


def _request_bytes(method: str, target: str, key: str, body: str | None = None) -> bytes:
    """One HTTP/1.1 request, written out so that its whole send precedes the hang-up clock."""
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", f"X-API-Key: {key}"]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body.encode())}"]
    return ("\r\n".join([*lines, "", ""]) + (body or "")).encode()


async def _sent_then_abandoned(port: int, request: bytes, after_s: float) -> int | None:
    """Send `request` whole, then reset the connection after `after_s` unless the status line
    came first; the status, or None when the client hung up first.

    Raw sockets rather than httpx: an httpx timeout also counts connecting and queueing in the
    client, so on a loaded host a 0-50 ms abort mostly lands before the request is even sent,
    and the server never meets the hang-up this test is about.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    try:
        async with asyncio.timeout(after_s):
            status_line = await reader.readline()
    except TimeoutError:
        status_line = b""
    writer.transport.abort()  # a reset, as a client that goes away leaves it
    return int(status_line.split()[1]) if status_line else None


async def _settled_within(server: ServeProcess, database: Database, bound_s: float) -> float:
    """Seconds until no connection is checked out of any worker's pool and no backend of the
    service is `idle in transaction`, counted from when the server answers `/readyz` again (a
    server still working off abandoned requests rightly holds connections); fails past
    `bound_s`."""
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        assert (await client.get("/readyz")).status_code == 200
        started = time.monotonic()
        while True:
            checked_out = (await scrape(client)).total(CHECKED_OUT)
            idle = await _service_backends(database, server.settings, "idle in transaction")
            waited = time.monotonic() - started
            if (checked_out, idle) == (0, 0):
                return waited
            assert waited < bound_s, f"checked out {checked_out}, idle in transaction {idle}"
            await asyncio.sleep(0.1)


async def test_clients_hanging_up_leave_no_connection_checked_out(
    server: ServeProcess, database: Database
) -> None:
    admin = await create_key(
        database, server.settings, name="hang ups", scopes=["admin"], rate_limit=UNLIMITED
    )
    owner = unique_owner("hangup")
    chance = random.Random(13)
    port = int(server.url.rsplit(":", 1)[1])
    requests = [
        _request_bytes("POST", KEYS, admin.plaintext, f'{{"name": "h{i}", "owner": "{owner}"}}')
        if i % 3 == 0
        else _request_bytes("GET", f"{KEYS}?owner={owner}", admin.plaintext)
        if i % 3 == 1
        else _request_bytes("GET", "/v1/whoami", unknown_key(server.settings))
        for i in range(ABANDONED)
    ]
    slots = asyncio.Semaphore(HANG_UP_CONCURRENCY)

    async def one(request: bytes) -> int | None:
        async with slots:
            return await _sent_then_abandoned(port, request, chance.uniform(0, 0.05))

    async with asyncio.timeout(300):
        statuses = Counter(await asyncio.gather(*(one(request) for request in requests)))
    hung_up_at = time.monotonic()
    settled_s = await _settled_within(server, database, SETTLED_WITHIN_S)
    total_s = time.monotonic() - hung_up_at
    assert statuses[None] > ABANDONED // 4, statuses  # most hang up before their answer
    assert set(statuses) <= {None, 200, 201, 401}, statuses
    # The hang-ups met the database at work, not an idle server: creates were committed.
    async with database.get_session() as session:
        stored = await session.scalar(
            text("SELECT count(*) FROM api_keys WHERE owner = :owner"), {"owner": owner}
        )
    assert stored, "no create reached the database before its client hung up"
    print(  # noqa: T201
        f"hang-ups: {dict(statuses)}, {stored} created, settled {settled_s:.2f} s after "
        f"/readyz answered, {total_s:.2f} s after the last hang-up"
    )
