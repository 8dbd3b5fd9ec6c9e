"""The Lua scripts gatekey runs in Redis, each a `.lua` file beside this module, loaded one way.

A new script is a `.lua` file here plus a `ScriptName` member. The limiter's hot path packs
EVALSHA itself from `LuaScript.body` and `sha1`; every other caller runs a script through
`register`, redis-py's Script over the same body.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from importlib import resources

from redis.asyncio import Redis
from redis.commands.core import AsyncScript


class ScriptName(StrEnum):
    """Each member names `<value>.lua` in this package; the file says its KEYS, ARGV and reply."""

    GCRA = "gcra"  # one rate-limit hit: GCRA decision plus usage count
    USAGE_APPLY_ONCE = "usage_apply_once"  # deferred usage handed over at most once
    USAGE_CLAIM = "usage_claim"  # the flusher claims the dirty set
    USAGE_READ = "usage_read"  # the flusher reads a chunk of keys' counters
    USAGE_FORGET = "usage_forget"  # the flusher drops stored minutes that are over
    USAGE_RELEASE = "usage_release"  # the flusher releases its lock
    DIRECTORY_PUT = "directory_put"  # a key-directory entry, never replaced by an older version


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


def register(redis: Redis, name: ScriptName) -> AsyncScript:
    """A callable script off the hot path: EVALSHA, loading the body on NOSCRIPT (in a pipeline,
    before the pipeline runs)."""
    return redis.register_script(load_script(name).body)
