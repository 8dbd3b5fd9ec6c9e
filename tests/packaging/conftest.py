"""Fresh venvs for the packaging tests: made with this interpreter, run apart from ours, and a
throwaway database each test's `gatekey db upgrade` creates and the fixture drops."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy import make_url

from service.config import DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL
from tests.integration.conftest import _admin_execute
from tests.integration.servers import forget_namespace

ROOT = Path(__file__).resolve().parents[2]
# A fresh venv downloads and installs every pin: minutes on a cold cache, seconds on a warm one.
INSTALL_TIMEOUT_S = 1800.0
COMMAND_TIMEOUT_S = 300.0


def copy_checkout(to: Path) -> Path:
    """The files a clone has: tracked, and new ones git does not ignore (no .venv, no .env)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (to / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, to / name)
    return to


class Venv:
    """A venv whose commands run with its bin/ first and none of our venv's environment."""

    def __init__(self, path: Path) -> None:
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        self.bin = path / "bin"

    def env(self, **extra: str) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
        path = f"{self.bin}{os.pathsep}{inherited.get('PATH', '')}"
        return {**inherited, "PATH": path, "VIRTUAL_ENV": str(self.bin.parent), **extra}

    def run(
        self,
        *args: str | Path,
        cwd: Path,
        env: dict[str, str] | None = None,
        timeout_s: float = COMMAND_TIMEOUT_S,
    ) -> str:
        """Run a command of this venv (`python`, `gatekey`...); its output, asserted exit 0."""
        command: Sequence[str] = [str(self.bin / str(args[0])), *map(str, args[1:])]
        done = subprocess.run(
            command,
            cwd=cwd,
            env=env or self.env(),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        output = done.stdout + done.stderr
        failed = f"{' '.join(command)} exited {done.returncode}:\n{output[-3000:]}"
        assert done.returncode == 0, failed
        return output

    def pip_install(self, *args: str | Path, cwd: Path) -> str:
        pip = ("python", "-m", "pip", "install")
        return self.run(*pip, *args, cwd=cwd, timeout_s=INSTALL_TIMEOUT_S)


@pytest.fixture
def deployment_env() -> Iterator[dict[str, str]]:
    """DATABASE_URL naming a database that does not exist yet (dropped afterwards), and a Redis
    namespace of the test's own (forgotten afterwards)."""
    base_url = os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
    redis_url = os.environ.get("REDIS_URL", DEFAULT_REDIS_URL)
    run_id = uuid.uuid4().hex[:8]
    name = f"gatekey_pkg_{run_id}"
    database_url = make_url(base_url).set(database=name).render_as_string(hide_password=False)
    namespace = f"gkpkg-{run_id}"
    yield {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "REDIS_NAMESPACE": namespace}
    forget_namespace(redis_url, namespace)
    asyncio.run(_admin_execute(base_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
