"""The wheel as a user installs it: built from the checkout, installed with the runtime pins into
a fresh venv, run from outside the checkout against a throwaway database."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest

from service.harness.processes import free_port, serving
from tests.packaging.conftest import ROOT, Venv, copy_checkout

pytestmark = pytest.mark.packaging

NOT_AT_RUNTIME = ("locust", "pytest", "flask", "gevent", "zmq", "schemathesis")


def build_wheel(source: Path, out: Path) -> Path:
    """Built from a copy of the checkout: setuptools leaves build/ behind in the tree it builds,
    and files a stale build/ still holds would end up in the wheel."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(out), str(source)],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("gatekey-*.whl")
    return wheel


def test_wheel_installs_migrates_and_serves(tmp_path: Path, deployment_env: dict[str, str]) -> None:
    wheel = build_wheel(copy_checkout(tmp_path / "clone"), tmp_path / "dist")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "service/migrations/env.py",
        "service/migrations/script.py.mako",
        "service/migrations/versions/0001_api_keys.py",
        "service/redis/gcra.lua",
    } <= names
    assert not [name for name in names if name.startswith(("tests/", "migrations/"))]

    venv = Venv(tmp_path / "venv")
    elsewhere = tmp_path / "elsewhere"  # no checkout, no .env: only the installed package
    elsewhere.mkdir()
    venv.pip_install("-r", ROOT / "requirements-runtime.txt", cwd=elsewhere)
    venv.pip_install("--no-deps", wheel, cwd=elsewhere)
    venv.run("python", "-m", "pip", "check", cwd=elsewhere)
    probe = f"import importlib.util as u; print([m for m in {NOT_AT_RUNTIME!r} if u.find_spec(m)])"
    assert venv.run("python", "-c", probe, cwd=elsewhere).strip() == "[]"

    printed = venv.run("gatekey", "--version", cwd=elsewhere).strip()
    assert printed == f"gatekey {version('gatekey')}"
    env = venv.env(**deployment_env)
    venv.run("gatekey", "db", "upgrade", cwd=elsewhere, env=env)
    venv.run("gatekey", "db", "check", cwd=elsewhere, env=env)

    port = free_port()
    command = [str(venv.bin / "gatekey"), "serve", "--port", str(port), "--workers", "1"]
    log = tmp_path / "serve.log"
    with serving(command, port=port, log=log, env=env, cwd=elsewhere) as server:
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
        ready = httpx.get(f"{server.url}/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
