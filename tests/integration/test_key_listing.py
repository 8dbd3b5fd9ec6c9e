"""The paged key listing: pages in creation order, filters, bad input, and paging while keys are
created (the plans at a million keys are in test_key_listing_plans.py)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from service.config import Settings
from service.db import Database
from service.keys import service
from service.keys.format import KeyFormat
from service.keys.listing import KeyCursor
from tests.factories import (
    TEST_ACTOR,
    assert_problem,
    create_key,
    key_header,
    run_cli,
    unique_owner,
)

KEYS = "/v1/admin/keys"


@pytest.fixture(scope="module")
def client(api: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    return api[1]


@pytest.fixture(scope="module")
async def admin(database: Database, settings: Settings) -> dict[str, str]:
    issued = await create_key(database, settings, name="lister", scopes=["admin"])
    return key_header(issued.plaintext)


async def _mint(
    session: AsyncSession, settings: Settings, owner: str, names: list[str]
) -> list[uuid.UUID]:
    """Keys named `names`, in that order, in one transaction: one `created_at` for all of them,
    so their order is their ids'."""
    ids = []
    for name in names:
        issued = await service.create_key(
            session=session,
            key_format=KeyFormat.from_settings(settings),
            name=name,
            owner=owner,
            actor=TEST_ACTOR,
        )
        ids.append(issued.record.id)
    return ids


async def test_pages_of_seven_show_every_key_once_in_creation_order(
    session: AsyncSession, settings: Settings
) -> None:
    owner = unique_owner("pages")
    ids = await _mint(session, settings, owner, [f"k{i}" for i in range(25)])
    pages, after = [], None
    while True:
        page = await service.list_keys(session=session, owner=owner, after=after, limit=7)
        pages.append([record.id for record in page.keys])
        if page.next_cursor is None:
            break
        after = KeyCursor.decode(page.next_cursor)
    assert [len(page) for page in pages] == [7, 7, 7, 4]
    # All 25 share a `created_at` (one transaction): the id orders them.
    assert [key for page in pages for key in page] == sorted(ids)
    exact = await service.list_keys(session=session, owner=owner, limit=25)
    assert (len(exact.keys), exact.next_cursor) == (25, None)


async def test_name_prefix_matches_wildcards_as_typed(
    session: AsyncSession, settings: Settings
) -> None:
    owner = unique_owner("prefix")
    names = ["50%off", "50xoff", "a_b", "axb", "back\\slash", "backxslash", "plain", "plainer"]
    ids = dict(zip(names, await _mint(session, settings, owner, names), strict=True))
    expected = {
        "50%": ["50%off"],
        "a_": ["a_b"],
        "back\\": ["back\\slash"],
        "plain": ["plain", "plainer"],
        "%": [],
        "": names,
    }
    for prefix, matching in expected.items():
        page = await service.list_keys(session=session, owner=owner, name_prefix=prefix)
        assert [r.id for r in page.keys] == sorted(ids[name] for name in matching), prefix


async def test_api_pages_with_the_audit_logs_shape(
    client: httpx.AsyncClient, admin: dict[str, str], database: Database, settings: Settings
) -> None:
    owner = unique_owner("api-pages")
    created = [(await create_key(database, settings, owner=owner)).record.id for _ in range(5)]
    revoked = await client.delete(f"{KEYS}/{created[1]}", headers=admin)
    assert revoked.status_code == 200
    disabled = await client.patch(f"{KEYS}/{created[2]}", json={"enabled": False}, headers=admin)
    assert disabled.status_code == 200
    seen: list[str] = []
    cursor: str | None = None
    bodies = []
    while True:
        params: dict[str, Any] = {"owner": owner, "limit": 2, "state": "all"}
        if cursor is not None:
            params["cursor"] = cursor
        response = await client.get(KEYS, params=params, headers=admin)
        assert response.status_code == 200, response.text
        bodies.append(response.json())
        seen += [key["id"] for key in response.json()["keys"]]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break
    assert [len(body["keys"]) for body in bodies] == [2, 2, 1]
    assert all(set(body) == {"keys", "next_cursor"} for body in bodies)
    assert seen == [str(key) for key in created]
    states = {"active": 3, "revoked": 1, "expired": 0, "disabled": 1, "all": 5}
    for state, count in states.items():
        listed = await client.get(KEYS, params={"owner": owner, "state": state}, headers=admin)
        assert len(listed.json()["keys"]) == count, state
    legacy = await client.get(KEYS, params={"owner": owner, "all": "true"}, headers=admin)
    assert [key["id"] for key in legacy.json()["keys"]] == [str(key) for key in created]


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


GARBLED_CURSORS = {
    "not base64": "!!!!",
    "not ours": _b64("hello"),
    "bad version": _b64(f"k0.1.{uuid.uuid4().hex}"),
    "bad time": _b64(f"k1.-5.{uuid.uuid4().hex}"),
    "time past year 9999": _b64(f"k1.{10**20}.{uuid.uuid4().hex}"),
    "bad id": _b64("k1.1.not-a-uuid-not-a-uuid-not-a-u"),
    "not ascii": base64.urlsafe_b64encode(b"k1.\xff\xfe").decode(),
    "too long": "a" * 101,
}


@pytest.mark.parametrize("garbled", list(GARBLED_CURSORS))
async def test_a_garbled_cursor_is_a_422_naming_cursor(
    client: httpx.AsyncClient, admin: dict[str, str], garbled: str
) -> None:
    response = await client.get(KEYS, params={"cursor": GARBLED_CURSORS[garbled]}, headers=admin)
    body = assert_problem(response, 422, "VALIDATION_ERROR")
    assert body["detail"].startswith(("cursor: ", "query.cursor: ")), body["detail"]


@pytest.mark.parametrize(
    ("params", "detail_starts"),
    [
        ({"limit": 0}, "query.limit: "),
        ({"limit": 1001}, "query.limit: "),
        ({"limit": "many"}, "query.limit: "),
        ({"state": "dormant"}, "query.state: "),
        ({"all": "true", "state": "revoked"}, "all: "),
    ],
)
async def test_bad_paging_input_is_a_422_naming_the_field(
    client: httpx.AsyncClient, admin: dict[str, str], params: dict[str, Any], detail_starts: str
) -> None:
    response = await client.get(KEYS, params=params, headers=admin)
    body = assert_problem(response, 422, "VALIDATION_ERROR")
    assert body["detail"].startswith(detail_starts), body["detail"]


async def test_paging_while_keys_are_created_shows_each_existing_key_once(
    client: httpx.AsyncClient, admin: dict[str, str], database: Database, settings: Settings
) -> None:
    """A creator commits keys between every two pages a pager reads (limit 7): every key of
    before the paging is listed exactly once, and no key twice."""
    owner = unique_owner("concurrent")
    existing = [(await create_key(database, settings, owner=owner)).record.id for _ in range(30)]
    async with database.get_session() as session:
        batch = await service.create_keys(
            session=session,
            key_format=KeyFormat.from_settings(settings),
            count=20,
            name="batch",
            owner=owner,
            actor=TEST_ACTOR,
        )
    existing += [issued.record.id for issued in batch]
    created: list[str] = []
    paging_done = asyncio.Event()

    async def creator() -> None:
        while not paging_done.is_set():
            response = await client.post(
                KEYS, json={"name": "meanwhile", "owner": owner}, headers=admin
            )
            assert response.status_code == 201, response.text
            created.append(response.json()["id"])

    async def until_created(count: int) -> None:
        """Wait (bounded) until the creator has committed `count` keys."""
        deadline = time.monotonic() + 30
        while len(created) < count:
            assert time.monotonic() < deadline, "the creator made no progress"
            await asyncio.sleep(0.01)

    async def pager() -> list[str]:
        listed: list[str] = []
        cursor: str | None = None
        while True:
            await until_created(len(created) + 1)
            params = {"owner": owner, "limit": "7"}
            if cursor is not None:
                params["cursor"] = cursor
            page = (await client.get(KEYS, params=params, headers=admin)).json()
            listed += [key["id"] for key in page["keys"]]
            cursor = page["next_cursor"]
            if cursor is None:
                return listed

    creating = asyncio.create_task(creator())
    try:
        listed = await pager()
    finally:
        paging_done.set()
        await creating
    assert len(listed) == len(set(listed)), "a key was listed twice"
    assert {str(key) for key in existing} <= set(listed)
    assert set(listed) <= {str(key) for key in existing} | set(created)
    pages = -(-len(listed) // 7)
    assert len(created) >= pages  # a key was committed before every page
    print(f"\nlisted {len(listed)} keys: 50 existing, {len(listed) - 50} of {len(created)} new")  # noqa: T201


async def test_cli_pages_and_streams_every_page(database: Database, settings: Settings) -> None:
    owner = unique_owner("cli-pages")
    ids = [str((await create_key(database, settings, owner=owner)).record.id) for _ in range(5)]
    first, streamed, table = await asyncio.gather(
        run_cli(settings, "keys", "list", "--owner", owner, "--limit", "3", "--json"),
        run_cli(
            settings, "keys", "list", "--owner", owner, "--limit", "2", "--all-pages", "--json"
        ),
        run_cli(settings, "keys", "list", "--owner", owner, "--limit", "3"),
    )
    for result in (first, streamed, table):
        assert (result.returncode, result.stderr) == (0, "")
    page = json.loads(first.stdout)
    assert [key["id"] for key in page["keys"]] == ids[:3]
    rest = await run_cli(
        settings, "keys", "list", "--owner", owner, "--cursor", page["next_cursor"], "--json"
    )
    assert json.loads(rest.stdout)["next_cursor"] is None
    assert [key["id"] for key in json.loads(rest.stdout)["keys"]] == ids[3:]
    assert [json.loads(line)["id"] for line in streamed.stdout.splitlines()] == ids
    assert f"more: --cursor {page['next_cursor']}" in table.stdout
    assert [key for key in ids if key in table.stdout] == ids[:3]
