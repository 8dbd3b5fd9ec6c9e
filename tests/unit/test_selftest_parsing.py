"""Self-test input parsing: Prometheus text, Locust JSON, child-process environments."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from service.config import RateLimitBackend, Settings
from service.harness.gatekey import settings_env
from service.selftest.load import locust_command, parse_locust_json, percentile
from service.selftest.model import SelftestAborted
from service.selftest.prom import parse_scrape
from service.selftest.sampling import DbActivity, sample_from

EXPOSITION = """\
# HELP gatekey_http_requests_total HTTP requests served
# TYPE gatekey_http_requests_total counter
gatekey_http_requests_total{method="GET",route="/v1/whoami",status="200"} 120.0
gatekey_http_requests_total{method="GET",route="/v1/whoami",status="503"} 3.0
gatekey_http_requests_total{method="POST",route="/v1/keys/verify",status="200"} 80.0
# TYPE gatekey_worker_resident_memory_bytes gauge
gatekey_worker_resident_memory_bytes{pid="4101"} 8.0e+07
gatekey_worker_resident_memory_bytes{pid="4102"} 9.0e+07
# TYPE gatekey_worker_cpu_seconds gauge
gatekey_worker_cpu_seconds{pid="4101"} 1.5
gatekey_worker_cpu_seconds{pid="4102"} 2.5
# TYPE gatekey_db_pool_checked_out gauge
gatekey_db_pool_checked_out 4.0
# TYPE gatekey_db_pool_wait_seconds histogram
gatekey_db_pool_wait_seconds_bucket{le="0.01"} 30.0
gatekey_db_pool_wait_seconds_bucket{le="+Inf"} 31.0
gatekey_db_pool_wait_seconds_count 31.0
gatekey_db_pool_wait_seconds_sum 0.2
# TYPE gatekey_db_pool_timeouts_total counter
gatekey_db_pool_timeouts_total 2.0
"""


def locust_entry(
    name: str, times: dict[str, int], failures: int, start: float, last: float
) -> dict[str, Any]:
    return {
        "name": name,
        "method": "GET",
        "start_time": start,
        "last_request_timestamp": last,
        "num_requests": sum(times.values()),
        "num_failures": failures,
        "response_times": times,
    }


# 100 requests in two entries over 4 s: response times 1-100 ms, once each.
LOCUST_JSON = json.dumps(
    [
        locust_entry("/v1/whoami", {str(ms): 1 for ms in range(1, 61)}, 2, 1000.0, 1003.5),
        locust_entry("/v1/usage", {str(ms): 1 for ms in range(61, 101)}, 1, 1000.5, 1004.0),
    ]
)


def test_scrape_sums_and_splits_by_label() -> None:
    scrape = parse_scrape(EXPOSITION)
    assert scrape.total("gatekey_http_requests_total") == 203
    assert scrape.total("gatekey_http_requests_total", status="503") == 3
    assert scrape.total("gatekey_http_requests_total", method="GET", status="200") == 120
    assert scrape.by_label("gatekey_worker_resident_memory_bytes", "pid") == {
        "4101": 8.0e7,
        "4102": 9.0e7,
    }
    assert "gatekey_db_pool_wait_seconds_count" in scrape.names()
    assert scrape.total("gatekey_missing") == 0


def test_sample_reads_the_figures_the_checks_need() -> None:
    sample = sample_from(parse_scrape(EXPOSITION), t_s=1.5, db=DbActivity(7, 1))
    assert (sample.requests, sample.responses_503, sample.pool_checked_out) == (203, 3, 4)
    assert (sample.pool_waits, sample.pool_timeouts) == (31, 2)
    assert sample.cpu_seconds == {"4101": 1.5, "4102": 2.5}
    assert sample.db == DbActivity(7, 1)


def test_locust_json_is_aggregated_over_every_entry() -> None:
    stats = parse_locust_json(LOCUST_JSON)
    assert (stats.requests, stats.failures, stats.rps) == (100, 3, 25.0)
    assert (stats.p50_ms, stats.p95_ms, stats.p99_ms) == (51, 96, 100)
    assert stats.error_rate == 0.03


def test_percentile_follows_locust() -> None:
    # Locust's rule (checked against locust.stats.calculate_response_time_percentile): walking
    # down from the slowest, the first time at which at most int(p * total) requests remain.
    assert percentile({10.0: 95, 200.0: 5}, 0.95) == 200.0
    assert percentile({10.0: 96, 200.0: 4}, 0.95) == 10.0
    assert percentile({}, 0.5) == 0.0


def test_the_most_frequent_failure_is_named() -> None:
    failures = (
        "Method,Name,Error,Occurrences\n"
        "GET,/v1/usage,HTTPError('503 Server Error'),3\n"
        'POST,/v1/keys/verify (unknown key),"expected NOT_FOUND, got 503 None",12\n'
    )
    stats = parse_locust_json(LOCUST_JSON, failures_csv=failures)
    assert stats.top_failure == (
        "POST /v1/keys/verify (unknown key): expected NOT_FOUND, got 503 None ×12"
    )
    assert parse_locust_json(LOCUST_JSON).top_failure == ""


def test_a_run_without_requests_stops_the_selftest() -> None:
    with pytest.raises(SelftestAborted, match="Locust made no request"):
        parse_locust_json("[]")


def test_locust_runs_headless_with_all_users_at_once() -> None:
    command = locust_command(url="http://h:1", users=50, duration_s=6.4, report=Path("/t/p"))
    text = " ".join(command)
    for part in (
        "--headless",
        "--users 50",
        "--spawn-rate 50",
        "--run-time 6s",
        "--json-file /t/p",
        "--csv /t/p",
        "--host http://h:1",
        "--reset-stats",
        "selftest/locustfile.py",
    ):
        assert part in text


def test_settings_env_reproduces_the_settings() -> None:
    settings = Settings(
        database_url="postgresql+asyncpg://u@h:1/db",
        database_pool_size=1,
        rate_limit_backend=RateLimitBackend.MEMORY,
        key_pepper=SecretStr("pepper!"),
    )
    env = settings_env(settings)
    assert env["DATABASE_URL"] == "postgresql+asyncpg://u@h:1/db"
    assert (env["DATABASE_POOL_SIZE"], env["RATE_LIMIT_BACKEND"]) == ("1", "memory")
    assert env["KEY_PEPPER"] == "pepper!"
    assert "WEB_CONCURRENCY" not in env  # unset stays unset
    assert Settings.model_validate({k.lower(): v for k, v in env.items()}) == settings
