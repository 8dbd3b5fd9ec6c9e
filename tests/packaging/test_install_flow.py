"""The checklist's pre-flight in a fresh venv and a copy of the checkout, as a new user runs it:
`pip install -r requirements.txt`, `pip check`, `python -m pytest --collect-only`; then
`gatekey preflight` and `gatekey selftest --quick` against a healthy `gatekey serve` say GO."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.harness.processes import free_port, serving
from tests.packaging.conftest import Venv, copy_checkout

pytestmark = pytest.mark.packaging

WORKERS = 2


def test_checklist_install_flow_then_go(tmp_path: Path, deployment_env: dict[str, str]) -> None:
    clone = copy_checkout(tmp_path / "clone")
    venv = Venv(tmp_path / "venv")
    venv.pip_install("-r", "requirements.txt", cwd=clone)
    venv.run("python", "-m", "pip", "check", cwd=clone)
    collected = venv.run("python", "-m", "pytest", "--collect-only", "-q", cwd=clone)
    found = re.search(r"(\d+) tests? collected", collected)
    assert found is not None, collected[-2000:]
    assert int(found.group(1)) > 0

    env = venv.env(**deployment_env)
    venv.run("gatekey", "db", "upgrade", cwd=clone, env=env)
    port = free_port()
    command = [str(venv.bin / "gatekey"), "serve", "--port", str(port), "--workers", str(WORKERS)]
    with serving(command, port=port, log=tmp_path / "serve.log", env=env, cwd=clone) as server:
        preflight = venv.run("gatekey", "preflight", "--workers", str(WORKERS), cwd=clone, env=env)
        assert "preflight passed" in preflight
        report = tmp_path / "selftest.json"
        venv.run(
            "gatekey", "selftest", "--quick", "--url", server.url, "--workers", str(WORKERS),
            "--json", report, cwd=clone, env=env,
        )  # fmt: skip
        assert '"verdict": "GO"' in report.read_text()
