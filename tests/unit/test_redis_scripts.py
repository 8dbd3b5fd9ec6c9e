"""The Lua scripts: one `.lua` file per name, each named by one SHA1 on every path that runs it."""

from __future__ import annotations

from importlib import resources

import pytest
from redis.asyncio import Redis

from service.redis import scripts
from service.redis.scripts import ScriptName, load_script


def test_every_lua_file_in_the_package_is_a_named_script_and_every_name_a_file() -> None:
    package = resources.files("service.redis")
    files = {entry.name for entry in package.iterdir() if entry.name.endswith(".lua")}
    assert files == {f"{name}.lua" for name in ScriptName}


@pytest.mark.parametrize("name", list(ScriptName))
async def test_the_hot_path_and_redis_py_name_a_script_by_the_same_sha1(name: ScriptName) -> None:
    # What the limiter's EVALSHA sends and what redis-py's Script sends must be one cached script.
    client = Redis(port=1)  # never contacted
    assert scripts.register(client, name).sha == load_script(name).sha1
    await client.aclose()
