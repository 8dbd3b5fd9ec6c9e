"""The documentation against the code: every relative link resolves (file and anchor), nothing
shipped points outside the repository, and the configuration, CLI and metric references list
exactly what `Settings`, the CLI and the metrics registry hold."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from scripts.cli_reference import DOC as CLI_DOC
from scripts.cli_reference import render
from service.config import Settings
from service.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
SHIPPED = ("README.md", "docs", "service", "cli", "deploy", "docker-compose.staging.yml")
# Markdown links and images, not inside inline code: [text](target) or ![alt](target).
LINK = re.compile(r"(?<!`)!?\[[^\]`]*\]\(([^)\s]+)\)")
OUTSIDE = re.compile(r"\.\./shared|DESIGN\.md|/work/")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)
    return {slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.MULTILINE)}


def links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves_to_a_file_and_anchor_inside_the_repository(doc: Path) -> None:
    broken = []
    for target in links(doc):
        file_part, _, anchor = target.partition("#")
        resolved = (doc.parent / file_part).resolve() if file_part else doc
        if (
            not resolved.is_relative_to(ROOT)
            or not resolved.exists()
            or (anchor and resolved.suffix == ".md" and anchor not in anchors(resolved))
        ):
            broken.append(target)
    assert broken == []


def test_anchors_follow_githubs_slugs() -> None:
    page = ROOT / "docs" / "README.md"
    assert "api.md" in links(page)
    assert slug("Changing `KEY_PREFIX` or `KEY_PEPPER`") == "changing-key_prefix-or-key_pepper"
    assert slug("Admin API: `/v1/admin/keys`") == "admin-api-v1adminkeys"
    assert "nowhere" not in anchors(ROOT / "docs" / "api.md")


def shipped_files() -> list[Path]:
    files: list[Path] = []
    for name in SHIPPED:
        path = ROOT / name
        candidates = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        files += [p for p in candidates if "__pycache__" not in p.parts]
    return files


def test_nothing_shipped_points_outside_the_repository() -> None:
    offenders = []
    for path in shipped_files():
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        offenders += [f"{path.relative_to(ROOT)}: {m}" for m in OUTSIDE.findall(text)]
        for match in re.finditer(r"\.\./[\w./-]*", text):
            if not (path.parent / match.group()).resolve().is_relative_to(ROOT):
                offenders.append(f"{path.relative_to(ROOT)}: {match.group()}")
    assert offenders == []


def documented_settings() -> dict[str, str]:
    text = (ROOT / "docs" / "configuration.md").read_text()
    return dict(re.findall(r"^\| `([A-Z_]+)` \| ([^|]+?) \|", text, flags=re.MULTILINE))


def value_of(cell: str) -> str:
    return cell.strip("`")


def test_configuration_lists_every_setting_with_its_default() -> None:
    documented = documented_settings()
    fields = Settings.model_fields
    assert set(documented) == {name.upper() for name in fields}
    for name, field in fields.items():
        cell = documented[name.upper()]
        default = field.default
        if default is None:
            assert not cell.startswith("`"), name  # words: "unset", "CPU count, capped to fit"
            continue
        if default == "":
            assert cell == "empty", name
            continue
        if isinstance(default, bool):
            assert value_of(cell) == str(default).lower(), name
            continue
        value = value_of(cell)
        if isinstance(default, int | float) and not isinstance(default, bool):
            assert float(value) == default, name
        else:
            assert value == str(getattr(default, "value", default)), name


def test_cli_reference_is_generated_from_the_cli() -> None:
    assert CLI_DOC.read_text() == render(), "run: .venv/bin/python scripts/cli_reference.py"


def test_metric_reference_lists_every_family_the_registry_holds() -> None:
    """The live scrape (tests/integration/test_prometheus_staging.py) checks the same against a
    real server; this is the same check in a second, without one."""
    registry = CollectorRegistry()
    Metrics(registry)
    exposed = {}
    for family in registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        exposed[name] = family.type
    text = (ROOT / "docs" / "metrics.md").read_text()
    documented = dict(re.findall(r"^\| `(gatekey_\w+)` \| (\w+) \|", text, flags=re.MULTILINE))
    assert exposed == documented
