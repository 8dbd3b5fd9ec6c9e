"""The `gatekey` CLI as a subprocess, run with the environment a `Settings` describes."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from pydantic import SecretStr

from service.config import Settings
from service.selftest.model import SelftestAborted

_TIMEOUT_S = 60.0


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment variables that reproduce `settings` in a child process."""
    env: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, Enum):
            value = value.value
        env[name.upper()] = str(value)
    return env


def gatekey_executable() -> list[str]:
    """The console script beside this interpreter (a venv), else the one on PATH."""
    beside = Path(sys.executable).with_name("gatekey")
    found = str(beside) if beside.exists() else shutil.which("gatekey")
    if found is None:
        raise SelftestAborted("the gatekey command is not installed (pip install -e .)")
    return [found]


@dataclass(frozen=True, slots=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def last_error_line(self) -> str:
        """The CLI's one-line `error: ...`, else the last line that is not SQLAlchemy's link."""
        lines = (self.stderr.strip() or self.stdout.strip()).splitlines()
        errors = [line for line in lines if line.startswith("error:")]
        useful = errors or [line for line in lines if not line.startswith("(Background on")]
        return useful[-1][:300] if useful else f"exit {self.returncode}"


@dataclass(frozen=True, slots=True)
class CreatedKey:
    id: str
    key: str


class GatekeyCli:
    """Runs `gatekey ...` as an admin would, against the database `settings` names."""

    def __init__(self, settings: Settings, executable: list[str] | None = None) -> None:
        self.settings = settings
        self.executable = executable or gatekey_executable()

    def env(self, **overrides: str) -> dict[str, str]:
        return {**os.environ, **settings_env(self.settings), **overrides}

    async def run(self, *args: str, **env_overrides: str) -> CliResult:
        process = await asyncio.create_subprocess_exec(
            *self.executable,
            *args,
            env=self.env(**env_overrides),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), _TIMEOUT_S)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise SelftestAborted(
                f"`gatekey {' '.join(args)}` hung for {_TIMEOUT_S:.0f} s"
            ) from None
        return CliResult(process.returncode or 0, out.decode(), err.decode())

    async def create_key(self, name: str, *, rate_limit: str) -> CreatedKey:
        # An expiry bounds what a self-test run that never finished leaves in a real database.
        result = await self.run(
            "keys",
            "create",
            "--name",
            name,
            "--scopes",
            "selftest",
            "--rate-limit",
            rate_limit,
            "--expires-in",
            "1h",
            "--json",
        )
        if result.returncode != 0:
            raise SelftestAborted(f"`gatekey keys create` failed: {result.last_error_line}")
        data = json.loads(result.stdout)
        return CreatedKey(id=str(data["id"]), key=str(data["key"]))

    async def revoke_key(self, key_id: str) -> None:
        result = await self.run("keys", "revoke", key_id)
        if result.returncode != 0:
            raise SelftestAborted(f"`gatekey keys revoke` failed: {result.last_error_line}")
