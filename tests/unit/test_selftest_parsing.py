"""Self-test input parsing: Prometheus text, Locust CSV, child-process environments."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from service.config import RateLimitBackend, Settings
from service.selftest.gatekey_cli import settings_env
from service.selftest.load import locust_command, parse_locust_csv
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
# TYPE gatekey_worker_cpu_seconds_total gauge
gatekey_worker_cpu_seconds_total{pid="4101"} 1.5
gatekey_worker_cpu_seconds_total{pid="4102"} 2.5
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

LOCUST_CSV = """\
Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,\
Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,\
90%,95%,98%,99%,99.9%,99.99%,100%
GET,/v1/whoami,3000,1,4,4.8,1.1,90.2,120.0,300.5,0.1,4,5,5,6,7,9,12,15,40,90,90
,Aggregated,4315,3,5,5.2,0.98,120.7,497.0,431.2,0.3,5,6,6,7,8,11,14,19,60,120,120
"""


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


def test_locust_csv_aggregated_row() -> None:
    stats = parse_locust_csv(LOCUST_CSV)
    assert (stats.requests, stats.failures, stats.rps) == (4315, 3, 431.2)
    assert (stats.p50_ms, stats.p95_ms, stats.p99_ms) == (5, 11, 19)
    assert stats.error_rate == 3 / 4315


def test_locust_csv_without_requests_reads_na_as_zero() -> None:
    header = LOCUST_CSV.splitlines()[0]
    empty = header + "\n,Aggregated,0,0,0,0,0,0,0,0,0,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A\n"
    stats = parse_locust_csv(empty)
    assert (stats.requests, stats.p95_ms, stats.error_rate) == (0, 0.0, 0.0)


def test_locust_csv_without_aggregate_stops_the_run() -> None:
    with pytest.raises(SelftestAborted, match="no aggregated"):
        parse_locust_csv(LOCUST_CSV.splitlines()[0] + "\n")


def test_locust_runs_headless_with_all_users_at_once() -> None:
    from pathlib import Path

    command = locust_command(url="http://h:1", users=50, duration_s=6.4, csv_prefix=Path("/t/p"))
    text = " ".join(command)
    for part in (
        "--headless",
        "--users 50",
        "--spawn-rate 50",
        "--run-time 6s",
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
    assert Settings(**{k.lower(): v for k, v in env.items()}) == settings
