"""Several limits per key, cost, shadow limits and the near-limit counter against real
`gatekey serve --workers 2` processes: every admitted count exact under concurrency."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter

import httpx

from service.db import Database
from service.keys import service
from service.owners.service import set_owner_limits
from tests.factories import TEST_ACTOR, assert_problem, create_key, key_header, unique_owner
from tests.integration.servers import (
    Clients,
    ServeProcess,
    fire,
    forget_namespace,
    wait_for_usage,
)

WHOAMI = "/v1/whoami"
VERIFY = "/v1/keys/verify"
DECISIONS = "gatekey_ratelimit_decisions_total"
NEAR_LIMIT = "gatekey_ratelimit_near_limit_total"
VERIFICATIONS = "gatekey_key_verifications_total"


def total(server: ServeProcess, sample: str, **labels: str) -> float:
    return sum(server.counts_by_pid(sample, **labels).values())


async def burst(server: ServeProcess, key: str, count: int) -> Counter[int | None]:
    async with Clients(server.url, connections=50) as clients:
        outcomes = await fire(
            lambda i: clients[i].get(WHOAMI, headers=key_header(key)), count, concurrency=50
        )
    assert [o.error for o in outcomes if o.error is not None] == []
    return Counter(o.status for o in outcomes)


async def verify(client: httpx.AsyncClient, key: str, cost: int = 1) -> httpx.Response:
    return await client.post(VERIFY, json={"key": key, "cost": cost})


async def test_the_tighter_limit_decides_and_a_refused_request_spends_no_limit(
    server: ServeProcess, database: Database
) -> None:
    issued = await create_key(database, server.settings, rate_limits=["50/hour", "60/day"])
    assert await burst(server, issued.plaintext, 500) == {200: 50, 429: 450}
    # The day's limit counted the 50 admitted only, not the 450 the hour's limit refused: with
    # the hour's limit gone, exactly 10 more pass.
    async with database.get_session() as session:
        await service.update_key(
            session=session, key_id=issued.record.id, rate_limits=["60/day"], actor=TEST_ACTOR
        )
    async with httpx.AsyncClient(base_url=server.url) as client:
        deadline = time.monotonic() + 5
        while (await verify(client, issued.plaintext, 0)).headers["RateLimit-Limit"] != "60":
            assert time.monotonic() < deadline, "the new limits never reached a worker"
            await asyncio.sleep(0.05)
    assert await burst(server, issued.plaintext, 200) == {200: 10, 429: 190}


async def test_headers_describe_the_limit_closest_to_exhaustion(
    server: ServeProcess, database: Database
) -> None:
    issued = await create_key(database, server.settings, rate_limits=["4/minute", "100/hour"])
    async with httpx.AsyncClient(base_url=server.url) as client:
        answers = [await client.get(WHOAMI, headers=key_header(issued.plaintext)) for _ in range(5)]
    policy = '"key-minute";q=4;w=60, "key-hour";q=100;w=3600'
    assert [a.headers["RateLimit-Policy"] for a in answers] == [policy] * 5
    assert [a.headers["RateLimit"].split(";")[0] for a in answers] == ['"key-minute"'] * 5
    assert [a.headers["RateLimit-Remaining"] for a in answers] == ["3", "2", "1", "0", "0"]
    assert_problem(answers[4], 429, "RATE_LIMITED")
    assert answers[0].json()["rate_limits"] == ["4/minute", "100/hour"]


async def test_cost_charges_every_limit_and_zero_only_reports(
    server: ServeProcess, database: Database
) -> None:
    issued = await create_key(database, server.settings, rate_limit="100/hour")
    async with Clients(server.url, connections=30) as clients:
        outcomes = await fire(
            lambda i: clients[i].post(VERIFY, json={"key": issued.plaintext, "cost": 5}),
            60,
            concurrency=30,
        )
    bodies = [o.response.json() for o in outcomes if o.response is not None]
    assert Counter((b["valid"], b["code"]) for b in bodies) == {
        (True, "VALID"): 20,
        (False, "RATE_LIMITED"): 40,
    }
    async with httpx.AsyncClient(base_url=server.url) as client:
        peek = await verify(client, issued.plaintext, 0)
        assert (peek.json()["valid"], peek.json()["ratelimit"]["remaining"]) == (True, 0)
        fresh = await create_key(database, server.settings, rate_limit="10/hour")
        too_costly = await verify(client, fresh.plaintext, 11)
        assert (too_costly.json()["valid"], too_costly.json()["code"]) == (False, "RATE_LIMITED")
        assert "Retry-After" not in too_costly.headers  # no wait makes it pass
        assert (await verify(client, fresh.plaintext, 10)).json()["valid"] is True
        for bad in (-1, 1_000_001, "5"):
            response = await client.post(VERIFY, json={"key": fresh.plaintext, "cost": bad})
            assert_problem(response, 422, "VALIDATION_ERROR")
            assert "cost" in response.json()["detail"]
    # Usage counts admitted requests, one each whatever their cost, none for a peek.
    await wait_for_usage(server, database, issued.record.id, 20)


async def test_a_shadow_limit_admits_and_counts_exactly_what_it_would_refuse(
    server: ServeProcess, database: Database
) -> None:
    issued = await create_key(
        database, server.settings, rate_limits=["1000/hour", "10/hour shadow"]
    )
    before = total(server, DECISIONS, decision="shadow_limited")
    near_before = total(server, NEAR_LIMIT)
    assert await burst(server, issued.plaintext, 100) == {200: 100}
    assert total(server, DECISIONS, decision="shadow_limited") - before == 90
    assert total(server, NEAR_LIMIT) == near_before  # 900 of 1,000 left: far from the limit


async def test_near_limit_counts_admissions_leaving_less_than_a_fifth(
    server: ServeProcess, database: Database
) -> None:
    issued = await create_key(database, server.settings, rate_limits=["100/hour", "1000/day"])
    before = total(server, NEAR_LIMIT)
    assert await burst(server, issued.plaintext, 150) == {200: 100, 429: 50}
    # Remaining 19 down to 0 after admission: 20 admissions.
    assert total(server, NEAR_LIMIT) - before == 20


async def test_an_owner_limit_counts_all_the_owners_keys_together(
    server: ServeProcess, database: Database
) -> None:
    owner = unique_owner()
    first, second = [
        await create_key(database, server.settings, owner=owner, rate_limit="1000/hour")
        for _ in range(2)
    ]
    other = await create_key(database, server.settings, owner=unique_owner(), rate_limit="5/hour")
    async with database.get_session() as session:
        # Unannounced (no listener): the version the trigger moved reaches every worker.
        await set_owner_limits(
            session=session, owner=owner, rate_limits=["30/hour"], actor=TEST_ACTOR
        )
    async with httpx.AsyncClient(base_url=server.url) as client:
        deadline = time.monotonic() + 5
        for key in (first.plaintext, second.plaintext):
            while "owner-hour" not in (await verify(client, key, 0)).headers["RateLimit-Policy"]:
                assert time.monotonic() < deadline, "the owner's limit never reached a worker"
                await asyncio.sleep(0.05)
    keys = (first.plaintext, second.plaintext)
    async with Clients(server.url, connections=50) as clients:
        outcomes = await fire(
            lambda i: clients[i].get(WHOAMI, headers=key_header(keys[i % 2])), 400, concurrency=50
        )
    assert Counter(o.status for o in outcomes) == {200: 30, 429: 370}
    refused = next(o.response for o in outcomes if o.status == 429 and o.response is not None)
    assert refused.headers["RateLimit"].startswith('"owner-hour";r=0;')
    assert refused.json()["code"] == "RATE_LIMITED"
    # Another owner's key is not held back by it.
    assert await burst(server, other.plaintext, 10) == {200: 5, 429: 5}


GENEROUS = "1000000/hour"


async def test_credits_admit_exactly_their_count_under_concurrency(
    server: ServeProcess, database: Database
) -> None:
    issued = await create_key(database, server.settings, rate_limit=GENEROUS, credits=1000)
    before = total(server, VERIFICATIONS, result="USAGE_EXCEEDED")
    async with Clients(server.url, connections=100) as clients:
        outcomes = await fire(
            lambda i: clients[i].get(WHOAMI, headers=key_header(issued.plaintext)),
            5000,
            concurrency=100,
            bound_s=120,
        )
    assert Counter(o.status for o in outcomes) == {200: 1000, 429: 4000}
    refused = next(o.response for o in outcomes if o.status == 429 and o.response is not None)
    assert_problem(refused, 429, "USAGE_EXCEEDED")
    assert "Retry-After" not in refused.headers  # no refill: nothing comes back
    assert total(server, VERIFICATIONS, result="USAGE_EXCEEDED") - before == 4000


async def test_a_refusal_by_credits_spends_no_limit_and_one_by_a_limit_no_credits(
    server: ServeProcess, database: Database
) -> None:
    issued = await create_key(database, server.settings, rate_limit="100/hour", credits=12)
    async with httpx.AsyncClient(base_url=server.url) as client:
        answers = [(await verify(client, issued.plaintext, 5)).json() for _ in range(3)]
        assert [(a["valid"], a["code"], a["credits_remaining"]) for a in answers] == [
            (True, "VALID", 7),
            (True, "VALID", 2),
            (False, "USAGE_EXCEEDED", 2),
        ]
        peek = (await verify(client, issued.plaintext, 0)).json()
        assert (peek["ratelimit"]["remaining"], peek["credits_remaining"]) == (90, 2)
        limited = await create_key(database, server.settings, rate_limit="3/hour", credits=10)
        codes = [(await verify(client, limited.plaintext)).json()["code"] for _ in range(5)]
        assert codes == ["VALID"] * 3 + ["RATE_LIMITED"] * 2
        assert (await verify(client, limited.plaintext, 0)).json()["credits_remaining"] == 7


async def test_credits_refill_lazily_at_each_period_boundary(
    server: ServeProcess, database: Database
) -> None:
    issued = await create_key(
        database, server.settings, rate_limit=GENEROUS, credits=2, refill="3/second"
    )
    async with httpx.AsyncClient(base_url=server.url) as client:
        deadline = time.monotonic() + 10
        while (answer := (await verify(client, issued.plaintext)).json())["valid"]:
            assert time.monotonic() < deadline, "credits never ran out"
        assert answer["code"] == "USAGE_EXCEEDED"
        while not (answer := (await verify(client, issued.plaintext)).json())["valid"]:
            assert time.monotonic() < deadline, "credits never came back"
        # Set back to 3 at the boundary, then this request spent one.
        assert answer["credits_remaining"] == 2


async def test_credits_survive_losing_redis_state_as_last_persisted(
    server: ServeProcess, database: Database
) -> None:
    issued = await create_key(database, server.settings, rate_limit=GENEROUS, credits=1000)
    assert await burst(server, issued.plaintext, 300) == {200: 300}
    deadline = time.monotonic() + 30
    while (await _persisted_credits(database, issued.record.id)) != 700:
        assert time.monotonic() < deadline, "the credits left were never persisted"
        await asyncio.sleep(0.1)
    forget_namespace(server.settings.redis_url, server.settings.redis_namespace)
    # Seeded again from PostgreSQL: what was persisted, not the 1,000 the cached record says.
    assert await burst(server, issued.plaintext, 1000) == {200: 700, 429: 300}


async def _persisted_credits(database: Database, key_id: uuid.UUID) -> int | None:
    async with database.get_session() as session:
        return (await service.get_key(session=session, key_id=key_id)).credits_remaining
