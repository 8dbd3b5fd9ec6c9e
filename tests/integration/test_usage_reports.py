"""Usage reports for admins: exact buckets and totals per minute, hour and day for a key and for
an owner's keys, over HTTP and from `gatekey usage --json`, cut in UTC; bad input 422 / exit 2."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, text

from service.config import Settings
from service.db import Database
from service.keys.models import ApiKey
from service.usage.rollups import Granularity, key_usage
from tests.factories import assert_problem, create_key, key_header, run_cli, unique_owner

# Whole days before today (UTC), so the expected buckets do not depend on the time of day.
TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
D3, D2, D1 = (TODAY - timedelta(days=n) for n in (3, 2, 1))
OLD = TODAY - timedelta(days=40)  # inside the 90d retention, outside a 7d window


def at(day: datetime, hour: int, minute: int = 0) -> datetime:
    return day + timedelta(hours=hour, minutes=minute)


@dataclass(frozen=True, slots=True)
class Owned:
    """Two keys of one owner (`first`, `second`) with known usage, and another owner's key."""

    owner: str
    first: uuid.UUID
    second: uuid.UUID
    stranger: uuid.UUID


@pytest.fixture(scope="module")
def client(api: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    return api[1]


@pytest.fixture(scope="module")
async def admin(database: Database, settings: Settings) -> dict[str, str]:
    issued = await create_key(database, settings, name="usage admin", scopes=["admin"])
    return key_header(issued.plaintext)


@pytest.fixture(scope="module")
async def owned(database: Database, settings: Settings) -> AsyncIterator[Owned]:
    owner = unique_owner("usage")
    first, second = [
        (await create_key(database, settings, name=f"usage {n}", owner=owner)).record.id
        for n in (1, 2)
    ]
    stranger = (await create_key(database, settings, owner=unique_owner("other"))).record.id
    rows = [
        (first, at(D3, 10, 0), 5),
        (first, at(D3, 10, 1), 7),
        (first, at(D3, 11, 30), 11),
        (first, at(D2, 23, 59), 13),
        (first, at(D1, 0, 0), 17),
        (first, at(D1, 5, 5), 19),
        (first, at(OLD, 12), 1000),
        (second, at(D3, 10, 0), 100),
        (second, at(D2, 23, 0), 200),
        (second, at(D1, 5, 59), 300),
        (stranger, at(D3, 10, 0), 5000),
    ]
    async with database.get_session() as session:
        await session.execute(
            text("INSERT INTO api_key_usage (key_id, minute, count) VALUES (:k, :m, :c)"),
            [{"k": k, "m": m, "c": c} for k, m, c in rows],
        )
        await session.commit()
    yield Owned(owner, first, second, stranger)
    async with database.get_session() as session:
        await session.execute(delete(ApiKey).where(ApiKey.id.in_([first, second, stranger])))
        await session.commit()


def buckets(body: dict[str, Any]) -> list[tuple[datetime, int]]:
    return [(datetime.fromisoformat(b["start"]), b["count"]) for b in body["buckets"]]


KEY_BY = {
    "day": [(D3, 23), (D2, 13), (D1, 36)],
    "hour": [
        (at(D3, 10), 12),
        (at(D3, 11), 11),
        (at(D2, 23), 13),
        (at(D1, 0), 17),
        (at(D1, 5), 19),
    ],
    "minute": [
        (at(D3, 10, 0), 5),
        (at(D3, 10, 1), 7),
        (at(D3, 11, 30), 11),
        (at(D2, 23, 59), 13),
        (at(D1, 0, 0), 17),
        (at(D1, 5, 5), 19),
    ],
}
OWNER_BY = {
    "day": [(D3, 123), (D2, 213), (D1, 336)],
    "hour": [
        (at(D3, 10), 112),
        (at(D3, 11), 11),
        (at(D2, 23), 213),
        (at(D1, 0), 17),
        (at(D1, 5), 319),
    ],
    "minute": [
        (at(D3, 10, 0), 105),
        (at(D3, 10, 1), 7),
        (at(D3, 11, 30), 11),
        (at(D2, 23, 0), 200),
        (at(D2, 23, 59), 13),
        (at(D1, 0, 0), 17),
        (at(D1, 5, 5), 19),
        (at(D1, 5, 59), 300),
    ],
}


@pytest.mark.parametrize("by", ["minute", "hour", "day"])
async def test_key_rollup_is_exact(
    client: httpx.AsyncClient, admin: dict[str, str], owned: Owned, by: str
) -> None:
    before = datetime.now(UTC)
    response = await client.get(
        f"/v1/admin/keys/{owned.first}/usage", params={"since": "7d", "by": by}, headers=admin
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["key_id"] == str(owned.first)
    assert body["by"] == by
    assert buckets(body) == KEY_BY[by]
    assert body["total"] == 72
    since = datetime.fromisoformat(body["since"])
    assert before - timedelta(days=7) <= since <= datetime.now(UTC) - timedelta(days=7)


@pytest.mark.parametrize("by", ["minute", "hour", "day"])
async def test_owner_rollup_sums_the_owners_keys_only(
    client: httpx.AsyncClient, admin: dict[str, str], owned: Owned, by: str
) -> None:
    response = await client.get(
        f"/v1/admin/owners/{owned.owner}/usage", params={"since": "7d", "by": by}, headers=admin
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["owner"], body["by"], body["total"]) == (owned.owner, by, 672)
    assert buckets(body) == OWNER_BY[by]


async def test_a_longer_window_reaches_older_rows_and_the_default_is_24h_by_hour(
    client: httpx.AsyncClient, admin: dict[str, str], owned: Owned
) -> None:
    wide = await client.get(
        f"/v1/admin/keys/{owned.first}/usage", params={"since": "60d", "by": "day"}, headers=admin
    )
    assert wide.status_code == 200, wide.text
    assert buckets(wide.json()) == [(OLD, 1000), *KEY_BY["day"]]
    assert wide.json()["total"] == 1072
    # The default: the last 24 hours by hour, exactly the rows from `since` on.
    default = await client.get(f"/v1/admin/keys/{owned.second}/usage", headers=admin)
    assert default.status_code == 200, default.text
    body = default.json()
    since = datetime.fromisoformat(body["since"])
    rows = [(at(D2, 23, 0), 200), (at(D1, 5, 59), 300)]
    expected = [(m.replace(minute=0), n) for m, n in rows if m >= since]
    assert (body["by"], buckets(body), body["total"]) == (
        "hour",
        expected,
        sum(n for _, n in expected),
    )


async def test_buckets_are_cut_in_utc_whatever_the_sessions_time_zone(
    database: Database, owned: Owned
) -> None:
    async with database.get_session() as session:
        await session.execute(text("SET TIME ZONE 'Pacific/Auckland'"))
        series = await key_usage(
            session=session, key_id=owned.first, window=timedelta(days=7), by=Granularity.DAY
        )
        await session.execute(text("RESET TIME ZONE"))
    assert [(b.start, b.count) for b in series.buckets] == KEY_BY["day"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"since": "0s"}, "since"),
        ({"since": "91d"}, "USAGE_RETENTION"),
        ({"since": "8d", "by": "minute"}, "buckets"),
        ({"by": "week"}, "query.by"),
        ({"since": "1" * 40}, "query.since"),
    ],
)
async def test_bad_input_is_a_422_naming_the_field(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    owned: Owned,
    params: dict[str, str],
    field: str,
) -> None:
    for path in (f"/v1/admin/keys/{owned.first}/usage", f"/v1/admin/owners/{owned.owner}/usage"):
        response = await client.get(path, params=params, headers=admin)
        body = assert_problem(response, 422, "VALIDATION_ERROR")
        assert field in body["detail"], body["detail"]
        assert "since" in body["detail"] or "by" in body["detail"]


async def test_unknown_key_or_owner_is_404_and_a_non_admin_key_403(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    owned: Owned,
    database: Database,
    settings: Settings,
) -> None:
    missing = await client.get(f"/v1/admin/keys/{uuid.uuid4()}/usage", headers=admin)
    assert_problem(missing, 404, "NOT_FOUND")
    nobody = await client.get(f"/v1/admin/owners/{unique_owner('nobody')}/usage", headers=admin)
    assert "no key has owner" in assert_problem(nobody, 404, "NOT_FOUND")["detail"]
    malformed = await client.get("/v1/admin/keys/not-a-uuid/usage", headers=admin)
    assert "path.key_id" in assert_problem(malformed, 422, "VALIDATION_ERROR")["detail"]
    plain = await create_key(database, settings, name="not admin", scopes=["read"])
    forbidden = await client.get(
        f"/v1/admin/owners/{owned.owner}/usage", headers=key_header(plain.plaintext)
    )
    assert_problem(forbidden, 403, "FORBIDDEN")


async def test_cli_json_matches_the_api_exactly(
    client: httpx.AsyncClient, admin: dict[str, str], owned: Owned, settings: Settings
) -> None:
    by_key = await run_cli(
        settings, "usage", str(owned.first), "--since", "7d", "--by", "hour", "--json"
    )
    assert by_key.returncode == 0, by_key.stderr
    body = json.loads(by_key.stdout)
    assert (body["key_id"], body["by"], body["total"]) == (str(owned.first), "hour", 72)
    assert buckets(body) == KEY_BY["hour"]

    by_owner = await run_cli(
        settings, "usage", "--owner", owned.owner, "--since", "7d", "--by", "minute", "--json"
    )
    assert by_owner.returncode == 0, by_owner.stderr
    body = json.loads(by_owner.stdout)
    assert (body["owner"], body["by"], body["total"]) == (owned.owner, "minute", 672)
    assert buckets(body) == OWNER_BY["minute"]


async def test_cli_table_shows_each_bucket_and_the_total(owned: Owned, settings: Settings) -> None:
    shown = await run_cli(settings, "usage", "--owner", owned.owner, "--since", "7d", "--by", "day")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    for day, count in OWNER_BY["day"]:
        assert any(day.strftime("%Y-%m-%d") in line and f"{count}" in line for line in lines)
    assert "total 672 in 3 days with requests" in shown.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ((), "give a KEY_ID or --owner OWNER"),
        (("KEY", "--owner", "someone"), "give a KEY_ID or --owner OWNER"),
        (("not-a-uuid",), "invalid KEY_ID 'not-a-uuid'"),
        (("--owner", "x", "--since", "soon"), "--since: invalid duration 'soon'"),
        (("--owner", "x", "--since", "100d"), "--since: 100d reaches past USAGE_RETENTION (90d)"),
        (("--owner", "x", "--by", "week"), "'week' is not one of 'minute', 'hour', 'day'"),
    ],
)
async def test_cli_bad_input_is_one_line_and_exit_2(
    settings: Settings, owned: Owned, args: tuple[str, ...], says: str
) -> None:
    args = tuple(str(owned.first) if arg == "KEY" else arg for arg in args)
    result = await run_cli(settings, "usage", *args)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr_lines) == 1, result.stderr
    assert says in result.stderr_lines[0], result.stderr
    assert result.stdout == ""


async def test_cli_unknown_owner_is_one_line_not_found(settings: Settings) -> None:
    owner = unique_owner("nobody")
    result = await run_cli(settings, "usage", "--owner", owner)
    assert result.returncode == 1
    assert result.stderr_lines == [f"error: no key has owner {owner!r} (NOT_FOUND)"]
