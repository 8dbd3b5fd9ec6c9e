"""The Lua scripts gatekey runs in Redis, each a `.lua` file beside this module, loaded one way.

A new script is a `.lua` file here plus a `ScriptName` member. The limiter's hot path packs
EVALSHA itself from `LuaScript.body` and `sha1`; every other caller runs a script through
`register`, redis-py's Script over the same body, or many calls of one at once through
`run_pipelined`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from service.redis.client import RedisClient


class ScriptName(StrEnum):
    """Each member names `<value>.lua` in this package; the file says its KEYS, ARGV and reply."""

    GCRA = "gcra"  # one rate-limit check: every limit, credits, usage count
    USAGE_APPLY_ONCE = "usage_apply_once"  # deferred usage handed over at most once
    USAGE_CLAIM = "usage_claim"  # the flusher claims the dirty set
    USAGE_READ = "usage_read"  # the flusher reads a chunk of keys' counters
    USAGE_FORGET = "usage_forget"  # the flusher drops stored minutes that are over
    USAGE_RELEASE = "usage_release"  # the flusher releases its lock
    DIRECTORY_PUT = "directory_put"  # a key-directory entry, never replaced by an older version
    CREDITS_SEED = "credits_seed"  # a key's credits from PostgreSQL, unless Redis has them


@dataclass(frozen=True, slots=True)
class LuaScript:
    name: ScriptName
    body: bytes
    sha1: str  # hex digest: what EVALSHA names the script by


@cache
def load_script(name: ScriptName) -> LuaScript:
    """Read `<name>.lua` from the package (a checkout or an installed wheel) once per process."""
    body = resources.files(__package__).joinpath(f"{name}.lua").read_bytes()
    return LuaScript(name, body, hashlib.sha1(body, usedforsecurity=False).hexdigest())


def register(redis: RedisClient, name: ScriptName) -> AsyncScript:
    """A callable script off the hot path: EVALSHA, loading the body on NOSCRIPT."""
    return redis.register_script(load_script(name).body)


ScriptCall = tuple[Sequence[str], Sequence[Any]]  # KEYS, ARGV


async def run_pipelined(
    redis: RedisClient, name: ScriptName, calls: Sequence[ScriptCall]
) -> list[Any]:
    """Each call's reply, the calls sent in one pipeline (on a Cluster, one per node; each
    call's keys must share a slot). Calls a server answers NOSCRIPT (flushed, restarted, a
    promoted replica) run again once the body is loaded: redis-py's Script does that for one
    call, and only for a single server's pipeline. Raises the first error of any call."""
    script = load_script(name)
    replies = await _evalsha(redis, script.sha1, calls)
    missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if missing:
        await redis.script_load(script.body)  # on a Cluster: on every primary
        again = await _evalsha(redis, script.sha1, [calls[i] for i in missing])
        for i, reply in zip(missing, again, strict=True):
            replies[i] = reply
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


async def _evalsha(redis: RedisClient, sha: str, calls: Sequence[ScriptCall]) -> list[Any]:
    async with redis.pipeline(transaction=False) as pipe:
        for keys, args in calls:
            # Not `pipe.evalsha`: redis-py refuses that name in a Cluster pipeline, though the
            # command routes like any other by its keys.
            pipe.execute_command("EVALSHA", sha, len(keys), *keys, *args)
        return list(await pipe.execute(raise_on_error=False))
