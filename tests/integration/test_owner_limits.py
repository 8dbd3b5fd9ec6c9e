"""Owner limits through the admin API and the CLI: stored, copied onto the owner's keys,
audited, and bad input refused whole."""

from __future__ import annotations

import json

import httpx
import pytest
from fastapi import FastAPI

from service.config import Settings
from service.db import Database
from service.keys import service as keys
from tests.factories import (
    assert_problem,
    create_key,
    key_header,
    run_cli,
    unique_owner,
)


@pytest.fixture(scope="module")
def client(api: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    return api[1]


@pytest.fixture(scope="module")
async def admin(database: Database, settings: Settings) -> dict[str, str]:
    issued = await create_key(database, settings, name="admin", scopes=["admin"])
    return key_header(issued.plaintext)


async def test_put_get_and_remove_an_owners_limits(
    client: httpx.AsyncClient, admin: dict[str, str], database: Database, settings: Settings
) -> None:
    owner = unique_owner()
    issued = await create_key(database, settings, owner=owner)
    url = f"/v1/admin/owners/{owner}/limits"
    put = await client.put(
        url, json={"rate_limits": [" 5 / minutes", "9/day shadow"]}, headers=admin
    )
    assert (put.status_code, put.json()) == (
        200,
        {"owner": owner, "rate_limits": ["5/minute", "9/day shadow"]},
    )
    assert (await client.get(url, headers=admin)).json() == put.json()
    async with database.get_session() as session:
        record = await keys.get_key(session=session, key_id=issued.record.id)
    assert record.owner_rate_limits == ("5/minute", "9/day shadow")
    whoami = await client.get("/v1/whoami", headers=key_header(issued.plaintext))
    assert whoami.json()["owner_rate_limits"] == ["5/minute", "9/day shadow"]
    assert whoami.headers["RateLimit-Policy"] == (
        '"key-minute";q=1000;w=60, "owner-minute";q=5;w=60'
    )
    removed = await client.put(url, json={"rate_limits": []}, headers=admin)
    assert removed.json() == {"owner": owner, "rate_limits": []}
    audit = (await client.get("/v1/admin/audit", params={"limit": 1000}, headers=admin)).json()
    entries = [e for e in audit["entries"] if e["owner"] == owner]
    assert [(e["action"], e["key_id"], e["changes"]) for e in entries] == [
        (
            "owner-set-limit",
            None,
            {"rate_limits": {"from": [], "to": ["5/minute", "9/day shadow"]}},
        ),
        (
            "owner-set-limit",
            None,
            {"rate_limits": {"from": ["5/minute", "9/day shadow"], "to": []}},
        ),
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"rate_limits": ["lots"]},
        {"rate_limits": ["1/minute", "2/minute"]},
        {"rate_limits": [f"{n}/hour" for n in range(1, 10)]},
        {"rate_limits": "5/minute"},
        {},
    ],
)
async def test_bad_owner_limits_are_422_and_change_nothing(
    client: httpx.AsyncClient, admin: dict[str, str], body: dict[str, object]
) -> None:
    owner = unique_owner()
    url = f"/v1/admin/owners/{owner}/limits"
    assert (await client.put(url, json={"rate_limits": ["7/hour"]}, headers=admin)).is_success
    response = await client.put(url, json=body, headers=admin)
    assert_problem(response, 422, "VALIDATION_ERROR")
    assert "rate_limits" in response.json()["detail"]
    assert (await client.get(url, headers=admin)).json()["rate_limits"] == ["7/hour"]


async def test_owner_limits_need_an_admin_key(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    plain = await create_key(database, settings, scopes=["read"])
    response = await client.put(
        "/v1/admin/owners/x/limits", json={"rate_limits": []}, headers=key_header(plain.plaintext)
    )
    assert_problem(response, 403, "FORBIDDEN")


async def test_cli_sets_shows_and_lists_owner_limits(settings: Settings) -> None:
    owner = unique_owner()
    set_ = await run_cli(settings, "owners", "set-limit", owner, "100/minute", "5000/day")
    assert set_.returncode == 0, set_.stderr
    assert f"{owner} limits are now 100/minute, 5000/day" in set_.stdout
    expected = {"owner": owner, "rate_limits": ["100/minute", "5000/day"]}
    shown = await run_cli(settings, "owners", "show", owner, "--json")
    assert json.loads(shown.stdout) == expected
    listed = await run_cli(settings, "owners", "list", "--json")
    assert expected in json.loads(listed.stdout)
    bad = await run_cli(settings, "owners", "set-limit", owner, "100/week")
    assert (bad.returncode, len(bad.stderr_lines)) == (2, 1)
    assert "'100/week'" in bad.stderr
    neither = await run_cli(settings, "owners", "set-limit", owner)
    assert (neither.returncode, neither.stderr_lines) == (
        2,
        ["error: give the limits, or --clear to remove them"],
    )
    cleared = await run_cli(settings, "owners", "set-limit", owner, "--clear", "--json")
    assert cleared.returncode == 0, cleared.stderr
