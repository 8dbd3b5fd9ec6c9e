"""The `gatekey` command as a subprocess: where it is installed, the environment a `Settings`
describes, a run with its output captured (blocking or asyncio), and the `serve` command line."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from pydantic import SecretStr

from service.config import Settings
from service.harness.processes import HOST, ProcessFailed

# A command that has not finished after this is hung (each run is an interpreter start, ~1 s).
CLI_TIMEOUT_S = 60.0


def gatekey_executable() -> str:
    """The console script beside this interpreter (a venv), else the one on PATH."""
    beside = Path(sys.executable).with_name("gatekey")
    found = str(beside) if beside.exists() else shutil.which("gatekey")
    if found is None:
        raise ProcessFailed("the gatekey command is not installed (pip install -e .)")
    return found


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


def cli_env(settings: Settings, **overrides: str) -> dict[str, str]:
    """Our environment, with `settings` and then `overrides` on top: what a `gatekey` command
    (or `gatekey serve`) needs to run as `settings` describe."""
    return {**os.environ, **settings_env(settings), **overrides}


def serve_command(port: int, *, workers: int | None = None) -> list[str]:
    """`gatekey serve` on 127.0.0.1:`port`; without `workers` it sizes the pool itself."""
    command = [gatekey_executable(), "serve", "--host", HOST, "--port", str(port)]
    return command if workers is None else [*command, "--workers", str(workers)]


@dataclass(frozen=True, slots=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def stderr_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    @property
    def last_error_line(self) -> str:
        """The CLI's one-line `error: ...`, else the last line that is not SQLAlchemy's link."""
        lines = (self.stderr.strip() or self.stdout.strip()).splitlines()
        errors = [line for line in lines if line.startswith("error:")]
        useful = errors or [line for line in lines if not line.startswith("(Background on")]
        return useful[-1][:300] if useful else f"exit {self.returncode}"


def _hung(args: Sequence[str], timeout_s: float) -> ProcessFailed:
    return ProcessFailed(f"`gatekey {' '.join(args)}` hung for {timeout_s:.0f} s")


def run_cli(
    *args: str, env: Mapping[str, str], cwd: Path | None = None, timeout_s: float = CLI_TIMEOUT_S
) -> CliResult:
    """Run `gatekey ARGS...` with `env` as its whole environment (see `cli_env`), blocking."""
    try:
        done = subprocess.run(
            [gatekey_executable(), *args],
            env=dict(env),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:  # subprocess.run has killed it
        raise _hung(args, timeout_s) from None
    return CliResult(done.returncode, done.stdout, done.stderr)


async def run_cli_async(
    *args: str, env: Mapping[str, str], cwd: Path | None = None, timeout_s: float = CLI_TIMEOUT_S
) -> CliResult:
    """`run_cli` for asyncio callers; a run cut short (timeout, cancellation) is killed."""
    process = await asyncio.create_subprocess_exec(
        gatekey_executable(),
        *args,
        env=dict(env),
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await process.communicate()
            code = await process.wait()
    except TimeoutError:
        raise _hung(args, timeout_s) from None
    finally:
        if process.returncode is None:
            with suppress(ProcessLookupError):  # it ended just now
                process.kill()
            await process.wait()
    return CliResult(code, out.decode(), err.decode())
