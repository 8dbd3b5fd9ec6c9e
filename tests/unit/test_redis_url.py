"""`REDIS_URL`: which Redis deployment each accepted form names, a one-line refusal (exit
code 2 at start-up) for each malformed one, and the keys one script call may take on each."""

from __future__ import annotations

import os

import pytest
from redis.asyncio import Redis, RedisCluster

from service.config import SettingsError, load_settings
from service.harness.gatekey import run_cli
from service.redis.client import slot_groups
from service.redis.url import RedisShape, RedisTarget, parse_redis_url


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "rediss://:secret@cache:6380/2", "unix:///run/redis.sock"]
)
def test_a_single_server_url_is_left_to_redis_py(url: str) -> None:
    assert parse_redis_url(url) == RedisTarget(RedisShape.SINGLE, url)


def test_a_cluster_url_names_its_seed_nodes_and_credentials() -> None:
    url = "rediss+cluster://gk:p%40ss@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002"
    assert parse_redis_url(url) == RedisTarget(
        RedisShape.CLUSTER,
        url,
        nodes=(("10.0.0.1", 7000), ("10.0.0.2", 7001), ("::1", 7002)),
        username="gk",
        password="p@ss",
        is_tls=True,
    )
    assert parse_redis_url("redis+cluster://h:7000/0").nodes == (("h", 7000),)


def test_a_sentinel_url_names_the_sentinels_the_master_and_its_database() -> None:
    url = "redis+sentinel://:secret@s1:26379,s2:26379,s3:26379/gkmaster/3"
    assert parse_redis_url(url) == RedisTarget(
        RedisShape.SENTINEL,
        url,
        nodes=(("s1", 26379), ("s2", 26379), ("s3", 26379)),
        master_name="gkmaster",
        db=3,
        password="secret",
    )
    assert parse_redis_url("redis+sentinel://s1:26379/gkmaster").db == 0


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:6379", "must start with one of redis://"),
        ("127.0.0.1:6379", "must start with one of redis://"),
        ("redis+cluster://127.0.0.1", "'127.0.0.1' is not host:port"),
        ("redis+cluster://127.0.0.1:7000,", "'' is not host:port"),
        ("redis+cluster://127.0.0.1:seven", "the port in '127.0.0.1:seven' is not a number"),
        ("redis+cluster://127.0.0.1:70000", "is not a number from 1 to 65535"),
        ("redis+cluster://127.0.0.1:7000/1", "a Redis Cluster has database 0 only"),
        ("redis+cluster://127.0.0.1:7000?timeout=1", "takes no query string"),
        ("redis+sentinel://127.0.0.1:26379", "name the master after the sentinels"),
        ("redis+sentinel://127.0.0.1:26379/m/x", "the database is not a number"),
        ("redis+sentinel://127.0.0.1:26379/m/0/extra", "name the master after the sentinels"),
    ],
)
def test_a_malformed_url_is_refused_in_one_line_naming_the_variable(url: str, reason: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(redis_url=url)
    message = str(caught.value)
    assert message.startswith("invalid setting REDIS_URL: ")
    assert reason in message
    assert "\n" not in message


def test_serve_refuses_a_malformed_url_with_one_line_and_exit_code_2() -> None:
    env = {**os.environ, "REDIS_URL": "redis+sentinel://127.0.0.1:26379"}
    result = run_cli("serve", "--workers", "1", env=env)
    assert result.returncode == 2
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert "REDIS_URL" in lines[0]
    assert "name the master after the sentinels" in lines[0]


async def test_a_cluster_takes_one_slot_per_script_call_and_one_server_takes_all() -> None:
    keys = ["gk:{a}:usage", "gk:{b}:usage", "gk:{a}:tat", "gk:{usage}:dirty"]
    cluster = RedisCluster(host="127.0.0.1", port=1)  # never connects: nothing is sent
    single = Redis(host="127.0.0.1", port=1)
    try:
        assert slot_groups(cluster, keys) == [[0, 2], [1], [3]]
        assert slot_groups(single, keys) == [[0, 1, 2, 3]]
        assert slot_groups(single, []) == []
    finally:
        await cluster.aclose()
        await single.aclose()
