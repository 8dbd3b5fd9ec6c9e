"""A real Prometheus with the staging scrape configuration and alert rules, pointed at
`gatekey serve --workers 2` on loopback: the target is up, the request counter grows by exactly
the requests sent, the rules evaluate, and the live exposition passes `promtool check metrics`
and matches docs/metrics.md family for family."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from service.db import Database
from service.harness.processes import ServerProcess, answers, free_port, serving, wait_until_async
from tests.factories import create_key, key_header
from tests.integration.servers import ServeProcess

ROOT = Path(__file__).resolve().parents[2]
STAGING = ROOT / "deploy" / "prometheus"
METRICS_DOC = ROOT / "docs" / "metrics.md"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "gatekey.json"
# Seconds between scrapes and rule evaluations here (15 s in staging): short, so the test waits
# little, and far from zero, so the two workers' files are read many times.
INTERVAL = "500ms"
SCRAPED_WITHIN_S = 60.0
REQUESTS = 37


def binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: apt-get install -y prometheus (`.ci/run` does)")
    return found


def staging_configuration(target: str, workdir: Path) -> Path:
    """The staging configuration with the target and intervals replaced, nothing else."""
    config: dict[str, Any] = yaml.safe_load((STAGING / "prometheus.yml").read_text())
    config["global"] = {
        "scrape_interval": f"{INTERVAL}",
        "evaluation_interval": f"{INTERVAL}",
    }
    config["rule_files"] = [str(STAGING / name) for name in config["rule_files"]]
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": [target]}]
    path = workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def prometheus(
    server: ServeProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    command = [
        binary("prometheus"),
        f"--config.file={staging_configuration(f'127.0.0.1:{server.port}', workdir)}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with serving(
        command, port=port, log=workdir / "prometheus.log", ready=answers("/-/ready")
    ) as running:
        yield running


async def query(client: httpx.AsyncClient, expr: str) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/query", params={"query": expr})
    body: dict[str, Any] = response.json()
    assert (response.status_code, body["status"]) == (200, "success"), (expr, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def scalar(client: httpx.AsyncClient, expr: str) -> float:
    (sample,) = await query(client, expr)
    return float(sample["value"][1])


async def scraped_after(client: httpx.AsyncClient, moment: float) -> bool:
    """True once Prometheus holds a scrape of gatekey that began after `moment`."""
    result = await query(client, 'timestamp(up{job="gatekey"})')
    return bool(result) and float(result[0]["value"][1]) > moment


HEALTHZ_SENT = 'sum(gatekey_http_requests_total{job="gatekey",route="/healthz"}) or vector(0)'


async def test_target_is_up_and_the_counter_grows_by_the_requests_sent(
    server: ServeProcess, prometheus: ServerProcess, database: Database
) -> None:
    async with (
        httpx.AsyncClient(base_url=prometheus.url, timeout=10) as prom,
        httpx.AsyncClient(base_url=server.url, timeout=10) as app,
    ):
        await wait_until_async(
            lambda: scraped_after(prom, 0), what="a first scrape", timeout_s=SCRAPED_WITHIN_S
        )
        assert await scalar(prom, 'up{job="gatekey"}') == 1
        before = await scalar(prom, HEALTHZ_SENT)
        statuses = [(await app.get("/healthz")).status_code for _ in range(REQUESTS)]
        # A keyed request: the limiter's Redis round trip is observed too.
        key = (await create_key(database, server.settings, name="prometheus")).plaintext
        assert (await app.get("/v1/whoami", headers=key_header(key))).status_code == 200
        sent_at = time.time()
        await wait_until_async(
            lambda: scraped_after(prom, sent_at),
            what="a scrape after the requests",
            timeout_s=SCRAPED_WITHIN_S,
        )
        assert statuses == [200] * REQUESTS
        assert await scalar(prom, HEALTHZ_SENT) - before == REQUESTS
        assert await scalar(prom, 'sum(gatekey_redis_round_trip_seconds_count{job="gatekey"})') >= 1
        assert await scalar(prom, 'count(gatekey_ratelimit_breaker_open{job="gatekey"})') == 2
        assert await scalar(prom, 'sum(gatekey_ratelimit_breaker_open{job="gatekey"})') == 0
        (build,) = await query(prom, 'gatekey_build_info{job="gatekey"}')
        assert build["metric"]["version"] == version("gatekey")
        assert build["value"][1] == "1"


async def test_alert_rules_and_dashboard_queries_evaluate_against_live_series(
    prometheus: ServerProcess,
) -> None:
    async with httpx.AsyncClient(base_url=prometheus.url, timeout=10) as prom:

        async def rules_evaluated_and_quiet() -> bool:
            """Every rule evaluated without error and no alert pending or firing: nothing is
            wrong with a healthy server (`GatekeyDown` may be pending before the first scrape)."""
            groups = (await prom.get("/api/v1/rules")).json()["data"]["groups"]
            rules = [rule for group in groups for rule in group["rules"]]
            return len(rules) == 7 and all(
                rule["health"] == "ok" and rule["state"] == "inactive" for rule in rules
            )

        await wait_until_async(
            rules_evaluated_and_quiet, what="the rules evaluated", timeout_s=SCRAPED_WITHIN_S
        )
        for panel in yaml.safe_load(DASHBOARD.read_text())["panels"]:
            for target in panel["targets"]:
                await query(prom, target["expr"])


def exposed_families(text: str) -> dict[str, str]:
    return dict(re.findall(r"^# TYPE (gatekey_\w+) (\w+)$", text, flags=re.MULTILINE))


def documented_families() -> dict[str, str]:
    rows = re.findall(r"^\| `(gatekey_\w+)` \| (\w+) \|", METRICS_DOC.read_text(), re.MULTILINE)
    return dict(rows)


async def test_live_exposition_passes_promtool_and_is_documented_family_for_family(
    server: ServeProcess,
) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as app:
        await app.get("/v1/whoami")  # a request: the labelled request families appear
        text = (await app.get("/metrics")).text
    linted = await asyncio.to_thread(
        subprocess.run,
        [binary("promtool"), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert (linted.returncode, linted.stdout, linted.stderr) == (0, "", "")
    assert exposed_families(text) == documented_families()
