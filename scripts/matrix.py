"""`make test-matrix`: the unit suite and an integration smoke on every Python 3.11-3.13 found.

Each interpreter gets a venv of its own, `.venv-3.X`, with `requirements.txt` (the checklist's
set: service, self-test and test tools), made again when a requirements file or pyproject.toml
changes. Run under `scripts/devservices.py run --` so DATABASE_URL and REDIS_URL answer.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VERSIONS = ("3.11", "3.12", "3.13")
# One module each for the database and migrations, Redis scripts, real server processes and the
# CLI: enough to catch an interpreter-specific break without the whole suite's minutes.
SMOKE = (
    "tests/integration/test_migrations.py",
    "tests/integration/test_ratelimit_redis.py",
    "tests/integration/test_keys_api.py",
    "tests/integration/test_cli.py",
)
INPUTS = ("requirements-runtime.txt", "requirements-test.txt", "requirements.txt", "pyproject.toml")


def find_interpreter(version: str) -> str | None:
    """The newest pyenv build of `version`, else `pythonX.Y` on PATH if it really runs."""
    builds = sorted(
        Path.home().glob(f".pyenv/versions/{version}.*/bin/python{version}"),
        key=lambda path: [int(part) for part in path.parts[-3].split(".") if part.isdigit()],
    )
    candidates = [str(path) for path in builds[-1:]] + [shutil.which(f"python{version}") or ""]
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-c", "import sys"], capture_output=True, check=False)
        if probe.returncode == 0:
            return candidate
    return None


def _inputs_digest() -> str:
    digest = hashlib.sha256()
    for name in INPUTS:
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def ensure_venv(python: str, version: str) -> Path:
    """`.venv-X.Y` with requirements.txt installed; made again when its inputs changed."""
    venv = ROOT / f".venv-{version}"
    stamp = venv / ".installed"
    wanted = _inputs_digest()
    if stamp.is_file() and stamp.read_text() == wanted:
        return venv
    subprocess.run([python, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "-r", "requirements.txt"], cwd=ROOT, check=True)
    stamp.write_text(wanted)
    return venv


def _pytest(venv: Path, *args: str) -> tuple[bool, str]:
    command = [str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    done = subprocess.run(command, cwd=ROOT, check=False, capture_output=True, text=True)
    return done.returncode == 0, done.stdout + done.stderr


def run(version: str, venv: Path, install_s: float) -> tuple[bool, str]:
    """Unit suite, then the smoke; their output (captured: versions run side by side) and a
    last line saying how it went and how long it took."""
    started = time.monotonic()
    passed, output = _pytest(venv, "tests/unit")
    if passed:
        passed, smoke = _pytest(venv, *SMOKE)
        output += smoke
    outcome = "passed" if passed else "FAILED"
    return passed, (
        f"--- python {version} ---\n{output}"
        f"python {version}: {outcome}; venv {install_s:.0f} s, "
        f"tests {time.monotonic() - started:.0f} s"
    )


def _timed_venv(python: str, version: str) -> tuple[Path, float]:
    started = time.monotonic()
    return ensure_venv(python, version), time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--versions",
        default=",".join(VERSIONS),
        help="comma-separated, of " + ", ".join(VERSIONS) + " (default: all)",
    )
    parser.add_argument(
        "--prepare", action="store_true", help="only make the venvs (CI: while other suites run)"
    )
    arguments = parser.parse_args()
    wanted = [v.strip() for v in arguments.versions.split(",") if v.strip()]
    unknown = sorted(set(wanted) - set(VERSIONS))
    if unknown:
        parser.error(f"unknown versions: {', '.join(unknown)}")
    found = {version: find_interpreter(version) for version in wanted}
    if not any(found.values()):
        sys.stderr.write(f"test-matrix: no Python of {', '.join(wanted)} found\n")
        return 2
    present = {version: python for version, python in found.items() if python is not None}
    # The installs wait on the network more than on a core: all at once.
    with ThreadPoolExecutor(max_workers=len(present)) as pool:
        venvs = dict(zip(present, pool.map(_timed_venv, present.values(), present), strict=True))
        if arguments.prepare:
            return 0
        # Each version has its own database and Redis namespace per run: side by side too.
        outcomes = list(
            pool.map(lambda item: run(item[0], *item[1]), venvs.items())  # (version, venv, s)
        )
    lines = [f"python {version}: not found, skipped" for version in found if version not in present]
    lines += [line for _, line in outcomes]
    sys.stdout.write("\n".join(["test-matrix:", *lines]) + "\n")
    return 0 if all(passed for passed, _ in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
