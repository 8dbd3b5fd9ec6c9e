"""The packaging's rules, read from the files: the Dockerfile (with Docker's own parser), the
.dockerignore, the pinned requirement sets against pyproject.toml, and the tested Pythons."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path

import dockerfile
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PINNED_BASE = re.compile(r"^python:(\d+\.\d+)\.\d+-slim-\w+@sha256:[0-9a-f]{64}$")
# What a production install must not carry (issue: every install pulled these).
NOT_AT_RUNTIME = {"locust", "pytest", "flask", "gevent", "pyzmq", "schemathesis", "mypy", "ruff"}


def stages() -> dict[str, list[dockerfile.Command]]:
    """The Dockerfile's stages by name, each with its own instructions (FROM first)."""
    parsed: dict[str, list[dockerfile.Command]] = {}
    current: list[dockerfile.Command] = []
    for command in dockerfile.parse_file(str(ROOT / "Dockerfile")):
        if command.cmd == "FROM":
            current = [command]
            parsed[command.value[2]] = current
        elif parsed:
            current.append(command)
    return parsed


def chain(name: str) -> list[dockerfile.Command]:
    """A stage's instructions with those of the stages it is built FROM, oldest first."""
    all_stages = stages()
    parent = all_stages[name][0].value[0]
    inherited = chain(parent) if parent in all_stages else []
    return [*inherited, *all_stages[name]]


def last(commands: list[dockerfile.Command], cmd: str) -> dockerfile.Command:
    found = [command for command in commands if command.cmd == cmd]
    assert found, f"no {cmd}"
    return found[-1]


def text_of(commands: list[dockerfile.Command]) -> str:
    return "\n".join(command.original for command in commands)


def pins(name: str) -> dict[str, str]:
    """`name -> version` of a requirements file and the files it includes with `-r`."""
    found: dict[str, str] = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            found |= pins(line.removeprefix("-r ").strip())
        elif line and not line.startswith("-e "):
            requirement = Requirement(line)
            assert str(requirement.specifier).startswith("=="), f"{name}: {line} is not pinned"
            found[canonicalize_name(requirement.name)] = str(requirement.specifier)[2:]
    return found


def project() -> dict[str, object]:
    table: dict[str, object] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return table


def names(requirements: object) -> set[str]:
    assert isinstance(requirements, list)
    return {canonicalize_name(Requirement(text).name) for text in requirements}


def test_the_base_image_is_pinned_by_tag_and_digest() -> None:
    arg = dockerfile.parse_file(str(ROOT / "Dockerfile"))[0]
    assert arg.cmd == "ARG"
    name, _, image = arg.value[0].partition("=")
    assert name == "PYTHON_IMAGE"
    assert PINNED_BASE.match(image), image
    roots = {commands[0].value[0] for commands in stages().values()} - set(stages())
    assert roots == {"${PYTHON_IMAGE}"}


def test_the_default_target_is_the_runtime_image_run_unprivileged() -> None:
    assert list(stages())[-1] == "runtime"
    runtime = chain("runtime")
    assert last(runtime, "USER").value[0] not in {"root", "0"}
    healthcheck = last(runtime, "HEALTHCHECK")
    assert "/healthz" in healthcheck.original
    assert "curl" not in healthcheck.original
    assert list(last(runtime, "CMD").value[:2]) == ["gatekey", "serve"]


def test_the_runtime_image_holds_no_tests_and_no_dev_or_test_requirements() -> None:
    runtime = text_of(chain("runtime"))
    for forbidden in ("requirements.txt", "requirements-dev.txt", "requirements-test.txt"):
        assert forbidden not in runtime
    copies = [command for command in chain("runtime") if command.cmd == "COPY"]
    assert not [command for command in copies if "tests" in command.value]
    assert "pip install -r requirements-runtime.txt" in runtime


def test_the_staging_target_adds_the_test_tools_and_tests_and_runs_unprivileged() -> None:
    staging = chain("staging")
    assert "pip install -r requirements-test.txt" in text_of(staging)
    assert any(c.cmd == "COPY" and c.value[0] == "tests" for c in staging)
    assert last(staging, "USER").value[0] not in {"root", "0"}


def test_dockerignore_keeps_secrets_environments_and_caches_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().splitlines())
    assert {
        ".env",
        ".env.*",
        ".venv",
        ".venv-*",
        ".git",
        "**/__pycache__",
        ".pytest_cache",
    } <= ignored
    # The staging target copies tests/: ignoring it would break that image.
    assert "tests" not in ignored


def test_runtime_pins_cover_the_dependencies_and_nothing_of_the_tools() -> None:
    runtime = pins("requirements-runtime.txt")
    assert names(project()["dependencies"]) <= set(runtime)
    assert not NOT_AT_RUNTIME & set(runtime)


def test_the_checklist_set_pins_the_extras_at_the_runtime_versions() -> None:
    checklist = pins("requirements.txt")
    extras = project()["optional-dependencies"]
    assert isinstance(extras, dict)
    assert names(extras["selftest"]) | names(extras["test"]) <= set(checklist)
    assert pins("requirements-runtime.txt").items() <= checklist.items()
    assert "-e ." in (ROOT / "requirements.txt").read_text().splitlines()


def test_classifiers_the_matrix_and_the_image_name_the_same_pythons() -> None:
    spec = importlib.util.spec_from_file_location("matrix", ROOT / "scripts" / "matrix.py")
    assert spec is not None
    assert spec.loader is not None
    matrix = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(matrix)
    classifiers = project()["classifiers"]
    assert isinstance(classifiers, list)
    declared = {
        c.removeprefix("Programming Language :: Python :: ")
        for c in classifiers
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    }
    assert declared == set(matrix.VERSIONS)
    image = dockerfile.parse_file(str(ROOT / "Dockerfile"))[0].value[0]
    found = PINNED_BASE.match(image.partition("=")[2])
    assert found is not None
    assert found.group(1) in declared


@pytest.mark.parametrize("name", ["requirements-runtime.txt", "requirements-test.txt"])
def test_every_requirement_is_pinned(name: str) -> None:
    assert pins(name)
