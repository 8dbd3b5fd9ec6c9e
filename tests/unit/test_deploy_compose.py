"""The staging compose file, checked without a Docker engine: the Compose Specification's schema,
real settings only, every setting explicit, ports on loopback, secrets out of git."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from service.config import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.staging.yml"
SCHEMA = ROOT / "deploy" / "schema" / "compose-spec.json"
ENV_EXAMPLE = ROOT / "deploy" / "staging.env.example"
GATEKEY_SERVICES = ("migrate", "app")
# In the env file beside the settings: other services' secrets and the service role's URL, which
# the app's command turns into DATABASE_URL for `gatekey serve` alone.
NOT_SETTINGS = {"POSTGRES_PASSWORD", "GF_SECURITY_ADMIN_PASSWORD", "GATEKEY_APP_DATABASE_URL"}


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def env_example() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines())
    return {name: value for name, value in (p for p in pairs if len(p) == 2) if name[:1] != "#"}


def setting_names() -> set[str]:
    return {name.upper() for name in Settings.model_fields}


def test_compose_file_is_valid_under_the_compose_specification() -> None:
    schema = json.loads(SCHEMA.read_text())
    errors = sorted(
        str(e.message) for e in jsonschema.Draft7Validator(schema).iter_errors(compose())
    )
    assert errors == []
    # The schema forbids unknown keys, so a misspelt one fails here: prove the validator bites.
    broken = compose()
    broken["services"]["app"]["depends_on"]["migrate"]["condition"] = "service_finished"
    assert list(jsonschema.Draft7Validator(schema).iter_errors(broken)) != []


def test_gatekey_services_set_only_real_settings_and_every_one_explicitly() -> None:
    env_file = env_example()
    assert set(env_file) - setting_names() <= NOT_SETTINGS
    for name in GATEKEY_SERVICES:
        service = compose()["services"][name]
        assert service["env_file"] == "deploy/staging.env"
        environment = set(service["environment"])
        assert environment - setting_names() == set(), name
        assert setting_names() - environment - set(env_file) == set(), name
    # Secrets only in the env file, never in the compose file.
    assert {"KEY_PEPPER", "DATABASE_URL"} <= set(env_file)
    for service in compose()["services"].values():
        for name, value in dict(service.get("environment", {})).items():
            assert not re.search("PASSWORD|PEPPER", name), name
            assert not re.search(r"://[^/@]+:[^/@]+@", str(value)), name


def test_app_waits_for_the_migration_and_publishes_on_loopback_only() -> None:
    services = compose()["services"]
    assert services["app"]["depends_on"]["migrate"] == {
        "condition": "service_completed_successfully"
    }
    assert services["migrate"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert services["app"]["depends_on"]["redis"] == {"condition": "service_healthy"}
    for service in ("postgres", "redis"):
        assert "healthcheck" in services[service]
    published = [port for s in services.values() for port in s.get("ports", [])]
    assert published == ["127.0.0.1:8000:8000", "127.0.0.1:9090:9090", "127.0.0.1:3000:3000"]
    assert services["grafana"]["profiles"] == ["grafana"]
    assert services["app"]["build"]["target"] == services["migrate"]["build"]["target"] == "staging"
    workers = int(services["app"]["environment"]["WEB_CONCURRENCY"])
    assert workers > 1


def test_state_lives_in_named_volumes_and_mounted_files_exist() -> None:
    """`down -v` removes named volumes: no bind mount may hold state, every one is read-only."""
    spec = compose()
    assert set(spec["volumes"]) == {"pgdata", "prometheus-data", "grafana-data"}
    for service in spec["services"].values():
        for volume in service.get("volumes", []):
            source, _target, *mode = volume.split(":")
            if source.startswith("./"):
                assert mode == ["ro"], volume
                assert (ROOT / source).exists(), volume
            else:
                assert source in spec["volumes"], volume
                assert not mode, volume


def test_the_real_env_file_is_ignored_by_git_and_the_example_has_no_real_secret() -> None:
    ignored = subprocess.run(
        ["git", "check-ignore", "--quiet", "deploy/staging.env"], cwd=ROOT, check=False
    )
    assert ignored.returncode == 0
    for name, value in env_example().items():
        if "PASSWORD" in name or name in {"KEY_PEPPER", "DATABASE_URL", "GATEKEY_APP_DATABASE_URL"}:
            assert re.search(r"change-me", value), name


def test_readme_staging_commands_name_real_services_and_published_ports() -> None:
    """The README's five staging commands, as the checklist spells them, against the file."""
    section = (ROOT / "README.md").read_text().split("## Staging", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^(docker-compose .+|curl .+)$", section, flags=re.MULTILINE)
    assert commands == [
        "docker-compose -f docker-compose.staging.yml up -d",
        "docker-compose -f docker-compose.staging.yml logs -f app",
        "docker-compose -f docker-compose.staging.yml exec app pytest tests/integration/ -v",
        "curl http://localhost:9090/metrics",
        "docker-compose -f docker-compose.staging.yml down -v",
    ]
    services = compose()["services"]
    assert "app" in services
    published = {
        port.split(":")[1]: name for name, s in services.items() for port in s.get("ports", [])
    }
    assert published["9090"] == "prometheus"
    assert published["8000"] == "app"
