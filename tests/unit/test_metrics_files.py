"""Multiprocess mode without processes: the shared directory, dead workers, merged totals."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import values

from service.metrics import Metrics, create_metrics, mark_worker_dead, prepare_multiprocess_dir
from service.metrics.multiprocess import ARCHIVE_NAME, MULTIPROC_DIR_ENV

OLD_FILES = ("gauge_liveall_7.db", "gauge_livesum_7.db", "counter_7.db", "histogram_7.db")


@pytest.fixture
def multiproc_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the test does to the variable is undone afterwards (setenv records the original,
    which `delenv` does not when the variable is absent)."""
    monkeypatch.setenv(MULTIPROC_DIR_ENV, "")


@pytest.mark.usefixtures("multiproc_env")
def test_prepare_empties_old_files_and_points_workers_at_the_directory(tmp_path: Path) -> None:
    for name in (*OLD_FILES, "counter_8.db"):
        (tmp_path / name).write_bytes(b"old")
    (tmp_path / "README").write_text("not ours")

    directory = prepare_multiprocess_dir(tmp_path)

    assert sorted(p.name for p in directory.iterdir()) == ["README"]
    assert Path(os.environ[MULTIPROC_DIR_ENV]) == tmp_path


def test_variable_set_after_import_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MULTIPROC_DIR_ENV, str(tmp_path))

    with pytest.raises(RuntimeError, match="set after prometheus_client was imported"):
        create_metrics()


@pytest.fixture
def worker_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """File-backed values in this process, as a worker started with the variable set has them."""
    monkeypatch.setenv(MULTIPROC_DIR_ENV, str(tmp_path))
    yield
    values.close_all_multiprocess_files()  # type: ignore[no-untyped-call]


def as_worker(pid: int, monkeypatch: pytest.MonkeyPatch) -> Metrics:
    """Metrics writing to `pid`'s files, standing in for a worker process with that pid."""
    value_class = values.MultiProcessValue(lambda: pid)  # type: ignore[no-untyped-call]
    monkeypatch.setattr(values, "ValueClass", value_class)
    return Metrics(None)


def samples(metrics: Metrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in metrics.scrape_registry.collect()
        for sample in family.samples
        if sample.name == name
    }


@pytest.mark.usefixtures("worker_values")
def test_totals_stay_exact_when_a_worker_dies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = as_worker(101, monkeypatch), as_worker(202, monkeypatch)
    first.http_requests.labels("GET", "/v1/whoami", "200").inc(3)
    second.http_requests.labels("GET", "/v1/whoami", "200").inc(4)
    first.http_request_duration.labels("GET", "/v1/whoami").observe(0.002)
    second.http_request_duration.labels("GET", "/v1/whoami").observe(0.003)
    for worker, pid in ((first, "101"), (second, "202")):
        worker.worker_resident_memory.labels(pid).set(int(pid) * 1000)
        worker.db_pool_checked_out.set(int(pid) // 100)
    second.usage_pending.set(5)
    first.usage_pending.set(3)

    mark_worker_dead(101)

    requests = {(("method", "GET"), ("route", "/v1/whoami"), ("status", "200")): 7.0}
    assert samples(second, "gatekey_http_requests_total") == requests
    duration_count = {(("method", "GET"), ("route", "/v1/whoami")): 2.0}
    assert samples(second, "gatekey_http_request_duration_seconds_count") == duration_count
    assert samples(second, "gatekey_worker_resident_memory_bytes") == {(("pid", "202"),): 202000.0}
    assert samples(second, "gatekey_db_pool_checked_out") == {(("pid", "202"),): 2.0}
    assert samples(second, "gatekey_usage_pending") == {(): 5.0}


@pytest.mark.usefixtures("worker_values")
def test_dead_workers_fold_into_one_archive_and_leave_no_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    survivor = as_worker(100, monkeypatch)
    survivor.http_requests.labels("GET", "/v1/auth", "401").inc()
    # Five workers in turn, each serving two requests and dying: a restart loop.
    for pid in range(201, 206):
        worker = as_worker(pid, monkeypatch)
        worker.http_requests.labels("GET", "/v1/whoami", "200").inc(2)
        worker.http_request_duration.labels("GET", "/v1/whoami").observe(0.002)
        worker.worker_resident_memory.labels(str(pid)).set(1000)
        mark_worker_dead(pid)

    names = {p.name for p in tmp_path.glob("*.db")}
    # Only the survivor's own files and the archives remain, whatever the number of deaths.
    assert {name.rsplit("_", 1)[1] for name in names} == {"100.db", f"{ARCHIVE_NAME}.db"}
    assert {f"counter_{ARCHIVE_NAME}.db", f"histogram_{ARCHIVE_NAME}.db"} <= names
    assert samples(survivor, "gatekey_http_requests_total") == {
        (("method", "GET"), ("route", "/v1/whoami"), ("status", "200")): 10.0,
        (("method", "GET"), ("route", "/v1/auth"), ("status", "401")): 1.0,
    }
    whoami = (("le", "0.0025"), ("method", "GET"), ("route", "/v1/whoami"))
    assert samples(survivor, "gatekey_http_request_duration_seconds_bucket")[whoami] == 5.0
    assert samples(survivor, "gatekey_worker_resident_memory_bytes") == {}


@pytest.mark.usefixtures("worker_values")
def test_pool_gauges_are_per_worker_and_pending_is_the_latest_report(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, second = as_worker(101, monkeypatch), as_worker(202, monkeypatch)
    first.db_pool_checked_out.set(4)
    second.db_pool_checked_out.set(6)
    second.usage_pending.set(5)
    first.usage_pending.set(3)

    assert samples(first, "gatekey_db_pool_checked_out") == {
        (("pid", "101"),): 4.0,
        (("pid", "202"),): 6.0,
    }
    assert samples(first, "gatekey_usage_pending") == {(): 3.0}
