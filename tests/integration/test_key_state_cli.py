"""`gatekey keys update/disable/enable` as subprocesses: exact output and audit entries, bad input
as one line; and a disable, then an enable, reaching every worker of `gatekey serve --workers 2`
within a second."""

from __future__ import annotations

import asyncio
import getpass
import json
import time
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from service.config import Settings
from service.db import Database
from service.keys import service
from tests.factories import (
    TEST_ACTOR,
    CliResult,
    assert_problem,
    create_key,
    key_header,
    run_cli,
    unique_owner,
)
from tests.integration.servers import Clients, ServeProcess, fire_until

CLI_ACTOR = f"cli:{getpass.getuser()}"
WHOAMI = "/v1/whoami"
VERIFICATIONS = "gatekey_key_verifications_total"
OVER_CAP = json.dumps({"k": "é" * 2044 + "x"}, ensure_ascii=False)  # 4097 bytes
UNKNOWN_ID = str(uuid.uuid4())


def _ok(result: CliResult) -> Any:
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    return json.loads(result.stdout)


async def _entries(database: Database, key_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    async with database.get_session() as session:
        rows = await session.execute(
            text("SELECT action, actor, changes FROM audit_log WHERE key_id = :id ORDER BY id"),
            {"id": uuid.UUID(key_id)},
        )
        return [(row.action, row.actor, row.changes) for row in rows]


async def test_update_disable_enable_change_the_key_with_one_entry_each(
    settings: Settings, database: Database
) -> None:
    owner = unique_owner("cli-update")
    created = _ok(
        await run_cli(
            settings, "keys", "create", "--name", "svc", "--metadata", '{"plan":"free"}', "--json"
        )
    )
    key_id = created["id"]
    assert (created["metadata"], created["enabled"]) == ({"plan": "free"}, True)

    updated = _ok(
        await run_cli(
            settings,
            *("keys", "update", key_id, "--name", "renamed", "--owner", owner),
            *("--scopes", "write,read", "--metadata", '{"plan": "pro", "seats": 3}'),
            *("--expires-at", "2030-01-01T00:00:00Z", "--disabled", "--json"),
        )
    )
    expected = {
        **{k: v for k, v in created.items() if k != "key"},
        "name": "renamed",
        "owner": owner,
        "scopes": ["read", "write"],
        "metadata": {"plan": "pro", "seats": 3},
        "expires_at": "2030-01-01T00:00:00Z",
        "enabled": False,
    }
    assert updated == expected
    assert (await _entries(database, key_id))[1:] == [
        (
            "update",
            CLI_ACTOR,
            {
                "name": {"from": "svc", "to": "renamed"},
                "owner": {"from": None, "to": owner},
                "scopes": {"from": [], "to": ["read", "write"]},
                "metadata": {"from": {"plan": "free"}, "to": {"plan": "pro", "seats": 3}},
                "expires_at": {"from": None, "to": "2030-01-01T00:00:00+00:00"},
                "enabled": {"from": True, "to": False},
            },
        )
    ]

    cleared = _ok(await run_cli(settings, "keys", "update", key_id, "--no-expiry", "--json"))
    assert cleared == {**expected, "expires_at": None}
    enabled = await run_cli(settings, "keys", "enable", key_id)
    assert (enabled.returncode, enabled.stderr) == (0, "")
    assert enabled.stdout.strip() == f"enabled {key_id} ({created['display_prefix']})"
    disabled = await run_cli(settings, "keys", "disable", key_id)
    assert disabled.stdout.strip() == f"disabled {key_id} ({created['display_prefix']})"
    shown = _ok(await run_cli(settings, "keys", "show", key_id, "--json"))
    assert shown == {**expected, "expires_at": None}
    assert [changes for _, _, changes in await _entries(database, key_id)][2:] == [
        {"expires_at": {"from": "2030-01-01T00:00:00+00:00", "to": None}},
        {"enabled": {"from": False, "to": True}},
        {"enabled": {"from": True, "to": False}},
    ]


EXISTING = "{existing}"
BAD_INPUT = {
    "metadata not JSON": (
        ("keys", "update", EXISTING, "--metadata", "{plan: pro}"),
        2,
        "Invalid value for '--metadata': not valid JSON (Expecting property name",
    ),
    "metadata not an object": (
        ("keys", "create", "--name", "x", "--metadata", "[1]"),
        2,
        "Invalid value for '--metadata': expected a JSON object such as",
    ),
    "metadata over the cap": (
        ("keys", "update", EXISTING, "--metadata", OVER_CAP),
        2,
        "metadata must be at most 4096 bytes as compact JSON, not 4097 (VALIDATION_ERROR)",
    ),
    "expiry without a zone": (
        ("keys", "update", EXISTING, "--expires-at", "2030-01-01T00:00:00"),
        2,
        "Invalid value for '--expires-at': '2030-01-01T00:00:00' names no time zone",
    ),
    "two expiries": (
        ("keys", "update", EXISTING, "--no-expiry", "--expires-in", "3d"),
        2,
        "give at most one of --expires-in, --expires-at and --no-expiry",
    ),
    "unknown key": (("keys", "disable", UNKNOWN_ID), 1, f"no key with id {UNKNOWN_ID}"),
    "malformed id": (("keys", "enable", "nope"), 2, "invalid key id 'nope'"),
}


async def test_bad_input_is_one_line_and_writes_nothing(
    settings: Settings, database: Database
) -> None:
    existing = str((await create_key(database, settings, name="cli target")).record.id)
    slots = asyncio.Semaphore(2)  # each run is an interpreter start: two at a time on 2 cores

    async def run(args: tuple[str, ...]) -> CliResult:
        async with slots:
            return await run_cli(settings, *(existing if a == EXISTING else a for a in args))

    results = await asyncio.gather(*(run(args) for args, _, _ in BAD_INPUT.values()))
    for (name, (_, code, says)), result in zip(BAD_INPUT.items(), results, strict=True):
        assert "Traceback" not in result.stdout + result.stderr, name
        assert (result.returncode, len(result.stderr_lines)) == (code, 1), (name, result.stderr)
        assert result.stderr_lines[0].startswith("error: "), name
        assert says in result.stderr_lines[0], (name, result.stderr_lines[0])
    assert [action for action, _, _ in await _entries(database, existing)] == ["create"]
    # Not bad input: the last of `--enabled/--disabled` wins, as with any click flag pair.
    last_wins = _ok(await run(("keys", "update", existing, "--enabled", "--disabled", "--json")))
    assert last_wins["enabled"] is False


async def _set_enabled_unannounced(database: Database, key_id: uuid.UUID, enabled: bool) -> None:
    """The change committed with nobody told (no pub/sub, no directory write): only each worker's
    key-change feed can carry it."""
    async with database.get_session() as session:
        await service.update_key(session=session, key_id=key_id, enabled=enabled, actor=TEST_ACTOR)


async def _every_worker_answers(server: ServeProcess, result: str, *, after: float) -> None:
    """Wait until every living worker has counted `result` since the moment `after` (polled
    with a deadline, which only bounds a broken run)."""
    await asyncio.sleep(max(0.0, after - time.monotonic()))
    base = server.counts_by_pid(VERIFICATIONS, result=result)
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        counts = server.counts_by_pid(VERIFICATIONS, result=result)
        if all(counts.get(pid, 0.0) > base.get(pid, 0.0) for pid in server.worker_pids()):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not every worker answered {result} within 60 s")


async def _answered_after(sent_at: list[float], moment: float) -> None:
    deadline = time.monotonic() + 60.0
    while not any(sent >= moment for sent in sent_at):
        assert time.monotonic() < deadline, "no request sent after the moment was answered"
        await asyncio.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("is_announced", [True, False], ids=["cli", "unannounced"])
async def test_disable_then_enable_reach_every_worker_within_a_second(
    server: ServeProcess, database: Database, *, is_announced: bool
) -> None:
    """Announced by the CLI, or not at all (the key-change feed alone carries it)."""
    issued = await create_key(database, server.settings, name="toggled", rate_limit="10000/second")
    key_id = issued.record.id
    # A new connection per request spreads them over both workers (kept-alive ones may not).
    headers = key_header(issued.plaintext) | {"Connection": "close"}

    async def toggle(enabled: bool) -> float:
        """Disable or enable; the moment that returned."""
        if is_announced:
            command = "enable" if enabled else "disable"
            result = await run_cli(server.settings, "keys", command, str(key_id))
            assert result.returncode == 0, result.stderr
        else:
            await _set_enabled_unannounced(database, key_id, enabled)
        return time.monotonic()

    stop = asyncio.Event()
    sent_at: list[float] = []  # when each answered request was sent, as answers come in

    async with Clients(server.url, connections=10) as clients:

        async def send(i: int) -> httpx.Response:
            started = time.monotonic()
            response = await clients[i].get(WHOAMI, headers=headers)
            sent_at.append(started)
            return response

        load = asyncio.create_task(fire_until(send, stop, concurrency=10))
        try:
            # The key in every worker's cache first: the change must evict it there.
            await _every_worker_answers(server, "VALID", after=time.monotonic())
            disabled_at = await toggle(False)
            await _every_worker_answers(server, "DISABLED", after=disabled_at + 1.0)
            # And one request sent a second after the disable answered, for the check below to
            # judge (on a starved host the counted ones may all have been sent earlier).
            await _answered_after(sent_at, disabled_at + 1.0)
            enable_started = time.monotonic()
            enabled_at = await toggle(True)
            await _every_worker_answers(server, "VALID", after=enabled_at + 1.0)
        finally:
            stop.set()
        outcomes = await load
    assert [o.error for o in outcomes if o.error is not None] == []
    # Every worker answered VALID before the disable (the counters said so); from a second after
    # it until the enable began, only DISABLED; from a second after the enable, only 200.
    while_disabled = [
        o
        for o in outcomes
        if o.started_at >= disabled_at + 1.0 and o.started_at + o.elapsed_s < enable_started
    ]
    after = [o for o in outcomes if o.started_at >= enabled_at + 1.0]
    assert while_disabled
    assert after
    assert {o.status for o in after} == {200}
    for outcome in while_disabled:
        assert outcome.response is not None
        assert_problem(outcome.response, 403, "DISABLED")
    # Nothing else was ever answered: a 403 of the whole run is DISABLED, the rest are 200.
    refused = [o.response for o in outcomes if o.status != 200 and o.response is not None]
    assert {o.status for o in outcomes} <= {200, 403}
    assert {response.json()["code"] for response in refused} == {"DISABLED"}
