"""gatekey's side of the run: a fresh database migrated by the CLI, and a key it never exhausts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from service.harness.gatekey import run_cli

# The limit the issue asks for: a 10 s run at tens of thousands of requests/s stays far below it.
UNREACHED_LIMIT = "100000000/minute"


@dataclass(frozen=True, slots=True)
class BenchDatabase:
    """`url` for gatekey (SQLAlchemy form); `admin_dsn` reaches the server's `postgres` database."""

    url: str

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[1].split("?", 1)[0]

    @property
    def admin_dsn(self) -> str:
        server = self.url.replace("postgresql+asyncpg://", "postgresql://", 1).rsplit("/", 1)[0]
        return server + "/postgres"

    async def drop(self) -> None:
        connection = await asyncpg.connect(self.admin_dsn)
        try:
            # The name comes from our own option, quoted as an identifier all the same.
            quoted = '"' + self.name.replace('"', '""') + '"'
            await connection.execute(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
        finally:
            await connection.close()


def _gatekey(args: list[str], env: dict[str, str], cwd: Path, *, timeout_s: float = 120) -> str:
    finished = run_cli(*args, env=env, cwd=cwd, timeout_s=timeout_s)
    if finished.returncode != 0:
        last_lines = "\n".join(finished.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"gatekey {' '.join(args)} failed: {last_lines}")
    return finished.stdout


def prepare(env: dict[str, str], cwd: Path) -> str:
    """Migrate the (already dropped) database with `gatekey db upgrade`; return a new key.
    `env` is the commands' whole environment."""
    _gatekey(["db", "upgrade"], env, cwd)
    created = _gatekey(
        ["keys", "create", "--name", "bench", "--rate-limit", UNREACHED_LIMIT, "--json"], env, cwd
    )
    key: str = json.loads(created)["key"]
    return key


# Credits a run never spends, and limits it never reaches: what is measured is their cost.
_FULL_CREDITS = "1000000000000000"
_FULL_OWNER = "bench-owner"


def full_limits_key(env: dict[str, str], cwd: Path) -> str:
    """A key with two limits, an owner-wide limit and credits (`owners set-limit`, then
    `keys create`)."""
    _gatekey(["owners", "set-limit", _FULL_OWNER, "999999999/hour"], env, cwd)
    args = ["keys", "create", "--name", "bench-full", "--owner", _FULL_OWNER, "--json"]
    limits = ["--rate-limit", UNREACHED_LIMIT, "--rate-limit", "999999999/day"]
    created = _gatekey([*args, *limits, "--credits", _FULL_CREDITS], env, cwd)
    key: str = json.loads(created)["key"]
    return key


def mint(env: dict[str, str], cwd: Path, count: int, rate_limit: str) -> list[str]:
    """`count` keys from `gatekey keys create --count N --json` (one JSON object a line)."""
    args = ["keys", "create", "--name", "bench", "--rate-limit", rate_limit, "--json"]
    created = _gatekey([*args, "--count", str(count)], env, cwd, timeout_s=1800)
    return [json.loads(line)["key"] for line in created.splitlines()]


def malformed(key: str) -> str:
    """The key with its last (checksum) character changed: well-shaped, fails only the CRC."""
    return key[:-1] + ("A" if key[-1] != "A" else "B")
