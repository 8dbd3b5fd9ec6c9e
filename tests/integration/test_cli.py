"""The installed `gatekey` CLI as a subprocess: listings; bad input is one line, no traceback."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from sqlalchemy import make_url

from service.config import Settings
from service.db import Database
from tests.factories import CliResult, call_window, create_key, revoke_key, run_cli, unique_owner

UNKNOWN_ID = str(uuid.uuid4())
EXISTING = "{existing}"  # replaced by the id of a key the fixture creates
MISSING_DATABASE = "{missing_database}"  # replaced by the URL of a database that does not exist


@dataclass(frozen=True, slots=True)
class BadInput:
    args: tuple[str, ...]
    exit_code: int
    says: str  # part of the one line on stderr
    env: dict[str, str] = field(default_factory=dict)


UNREACHABLE = "postgresql+asyncpg://postgres@127.0.0.1:1/gatekey"
BAD_INPUT = {
    "unknown id": BadInput(("keys", "show", UNKNOWN_ID), 1, f"no key with id {UNKNOWN_ID}"),
    "malformed id": BadInput(("keys", "revoke", "not-a-uuid"), 2, "invalid key id 'not-a-uuid'"),
    "bad limit (create)": BadInput(
        ("keys", "create", "--name", "x", "--rate-limit", "100/week"), 2, "'100/week'"
    ),
    "bad limit (set-limit)": BadInput(("keys", "set-limit", EXISTING, "lots"), 2, "'lots'"),
    "two limits of one window": BadInput(
        ("keys", "set-limit", EXISTING, "1/second", "2/second"),
        2,
        "rate_limits: more than one enforced limit per second",
    ),
    "set-limit without limits": BadInput(
        ("keys", "set-limit", EXISTING), 2, "give the limits, or --clear to remove them"
    ),
    "negative credits": BadInput(
        ("keys", "create", "--name", "x", "--credits", "-1"), 2, "credits: must be 0 to"
    ),
    "refill without credits": BadInput(
        ("keys", "create", "--name", "x", "--refill", "5/day"), 2, "refill: the key has no credits"
    ),
    "bad owner limit": BadInput(("owners", "set-limit", "acme", "5/week"), 2, "'5/week'"),
    "bad --expires-in": BadInput(
        ("keys", "create", "--name", "x", "--expires-in", "forever"), 2, "duration 'forever'"
    ),
    "unreachable DATABASE_URL": BadInput(
        ("keys", "list"), 1, "database unavailable", {"DATABASE_URL": UNREACHABLE}
    ),
    "bad DATABASE_POOL_SIZE": BadInput(
        ("keys", "list"), 2, "setting DATABASE_POOL_SIZE: ", {"DATABASE_POOL_SIZE": "lots"}
    ),
    "bad RATE_LIMIT_DEFAULT": BadInput(
        ("keys", "list"), 2, "RATE_LIMIT_DEFAULT", {"RATE_LIMIT_DEFAULT": "100/week"}
    ),
    "missing database": BadInput(
        ("keys", "list"), 1, "does not exist", {"DATABASE_URL": MISSING_DATABASE}
    ),
    "missing argument": BadInput(
        ("keys", "show"), 2, "Missing argument 'key_id'. (see `gatekey keys show --help`)"
    ),
    "unknown command": BadInput(("keys", "delete"), 2, "No such command 'delete'."),
    "unknown option": BadInput(("keys", "list", "--sort", "name"), 2, "No such option: --sort"),
    "--limit 0": BadInput(
        ("keys", "list", "--limit", "0"), 2, "'--limit': Input should be greater than or equal to 1"
    ),
    "garbled --cursor": BadInput(
        ("keys", "list", "--cursor", "bm9wZQ"),
        2,
        "Invalid value for '--cursor': cursor: not a cursor",
    ),
    "--all and --state": BadInput(
        ("keys", "list", "--all", "--state", "revoked"), 2, "'--all': all: `all` means state=all"
    ),
    "option without value": BadInput(
        ("keys", "create", "--name"), 2, "Option '--name' requires an argument."
    ),
}


@pytest.fixture(scope="module")
async def bad_input_results(database: Database, settings: Settings) -> dict[str, CliResult]:
    """Every bad-input case run once, two at a time (each is a ~1 s interpreter start): all at
    once, on a busy 2-core host, each run's own time limit would be spent waiting for a core."""
    existing = str((await create_key(database, settings, name="cli target")).record.id)
    missing = make_url(settings.database_url).set(database=f"gatekey_missing_{uuid.uuid4().hex}")
    missing_url = missing.render_as_string(hide_password=False)

    slots = asyncio.Semaphore(2)

    async def run(case: BadInput) -> CliResult:
        async with slots:
            return await run_cli(
                settings,
                *(existing if a == EXISTING else a for a in case.args),
                env={k: v.replace(MISSING_DATABASE, missing_url) for k, v in case.env.items()},
            )

    results = await asyncio.gather(*(run(case) for case in BAD_INPUT.values()))
    return dict(zip(BAD_INPUT, results, strict=True))


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_line_and_an_exit_code(
    bad_input_results: dict[str, CliResult], case: str
) -> None:
    """Settings, usage and input errors exit 2 (naming the variable, the value or the command's
    help); a refused operation (an unknown key, an unreachable database) exits 1."""
    expected = BAD_INPUT[case]
    result = bad_input_results[case]
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-2000:]
    assert result.returncode == expected.exit_code, result.stderr
    assert len(result.stderr_lines) == 1, result.stderr
    line = result.stderr_lines[0]
    assert line.startswith("error: ")
    assert expected.says in line


async def test_list_hides_revoked_keys_unless_all(database: Database, settings: Settings) -> None:
    owner = unique_owner("cli-list")
    active = await create_key(database, settings, name="active", owner=owner)
    revoked = await create_key(database, settings, name="revoked", owner=owner)
    await revoke_key(database, revoked.record.id)

    listed, listed_all, table = await asyncio.gather(
        run_cli(settings, "keys", "list", "--owner", owner, "--json"),
        run_cli(settings, "keys", "list", "--owner", owner, "--all", "--json"),
        run_cli(settings, "keys", "list", "--owner", owner),
    )
    for result in (listed, listed_all, table):
        assert (result.returncode, result.stderr) == (0, "")
    assert json.loads(listed.stdout)["next_cursor"] is None
    assert [k["id"] for k in json.loads(listed.stdout)["keys"]] == [str(active.record.id)]
    everything = json.loads(listed_all.stdout)["keys"]
    assert {k["id"] for k in everything} == {str(active.record.id), str(revoked.record.id)}
    assert all(set(k) >= {"id", "name", "owner", "rate_limits", "revoked_at"} for k in everything)
    assert all("key" not in k and "key_hash" not in k for k in everything)
    assert str(active.record.id) in table.stdout
    assert str(revoked.record.id) not in table.stdout
    assert active.plaintext not in listed_all.stdout + table.stdout


async def test_create_rotate_show_as_json(settings: Settings) -> None:
    owner = unique_owner("cli-json")
    with call_window() as creating:
        created = await run_cli(
            settings,
            "keys",
            "create",
            "--name",
            "round trip",
            "--owner",
            owner,
            "--expires-in",
            "30d",
            "--json",
        )
    assert created.returncode == 0, created.stderr
    issued = json.loads(created.stdout)
    creating.assert_stamped(issued["expires_at"], plus=timedelta(days=30))

    with call_window() as rotating:
        rotated = await run_cli(settings, "keys", "rotate", issued["id"], "--grace", "1h", "--json")
    assert rotated.returncode == 0, rotated.stderr
    successor = json.loads(rotated.stdout)
    assert successor["key"] != issued["key"]
    assert (successor["name"], successor["owner"]) == ("round trip", owner)
    shown = await run_cli(settings, "keys", "show", issued["id"], "--json")
    old = json.loads(shown.stdout)
    assert {k: v for k, v in old.items() if k not in {"revoked_at", "replaced_by_id"}} == {
        k: v for k, v in issued.items() if k not in {"key", "revoked_at", "replaced_by_id"}
    }
    assert old["replaced_by_id"] == successor["id"]
    rotating.assert_stamped(old["revoked_at"], plus=timedelta(hours=1))
