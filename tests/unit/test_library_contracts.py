"""Contracts with library internals: each test fails naming the library and its installed version.

gatekey leans on five internals that have no public equivalent; each is touched by one adapter
(ADAPTERS) and checked here for the names, signatures and behaviour the adapter relies on, so an
upgrade that changes one fails here, loudly, instead of somewhere downstream or in production.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import itertools
import os
import signal
import socket
import threading
import warnings
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import typer
import uvicorn
from prometheus_client import values
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry, QueuePool
from sqlalchemy.util.concurrency import greenlet_spawn
from uvicorn.supervisors import multiprocess as uvicorn_multiprocess

from service.metrics.prometheus_files import add_file_values, values_are_file_backed
from service.workers import supervisor

ROOT = Path(__file__).resolve().parents[2]
# Each internal, and the one module allowed to touch it: the adapter these contracts check.
ADAPTERS = {
    "prometheus_client.mmap_dict": "service/metrics/prometheus_files.py",
    "ValueClass._multiprocess": "service/metrics/prometheus_files.py",
    "_do_get": "service/metrics/pool.py",
    "_do_return_conn": "service/metrics/pool.py",
    "keep_subprocess_alive": "service/workers/supervisor.py",
    "typer._click": "cli/main.py",
    "pgserver._commands": "scripts/devservices.py",
}


@contextlib.contextmanager
def contract(library: str, internal: str, relied_on: str) -> Iterator[None]:
    """Any failure inside becomes one that names the library, its version and the adapter."""
    try:
        yield
    except Exception as error:
        pytest.fail(
            f"{library} {version(library)} changed an internal: {relied_on} no longer holds "
            f"({error!r}). Adapt {ADAPTERS[internal]}, which relies on it, or pin the version "
            "it was written for."
        )


def parameters(function: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_each_internal_is_touched_by_its_adapter_only() -> None:
    this_file = Path(__file__).resolve()
    sources = {
        path: path.read_text()
        for folder in ("service", "cli", "scripts", "bench", "migrations", "tests")
        for path in (ROOT / folder).rglob("*.py")
        if path != this_file
    }
    for internal, adapter in ADAPTERS.items():
        users = [str(path.relative_to(ROOT)) for path, text in sources.items() if internal in text]
        assert users == [adapter], f"{internal} is used outside its adapter {adapter}: {users}"


@pytest.fixture
def worker_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A multiprocess directory whose value files are closed afterwards."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    yield tmp_path
    values.close_all_multiprocess_files()  # type: ignore[no-untyped-call]


def test_prometheus_client_value_files_add_up(worker_files: Path) -> None:
    with contract(
        "prometheus-client",
        "prometheus_client.mmap_dict",
        "MmapedDict reads and writes the files the library's value class writes",
    ):
        for pid, amount in ((101, 3.0), (202, 4.0)):
            # As a worker with this pid writes its counter, through the library's own value class.
            value_class = values.MultiProcessValue(lambda pid=pid: pid)  # type: ignore[no-untyped-call]
            value_class("counter", "jobs", "jobs_total", ("queue",), ("a",), "Jobs.").inc(amount)
            add_file_values(worker_files / f"counter_{pid}.db", worker_files / "counter_sum.db")

        merged = MultiProcessCollector.merge([str(worker_files / "counter_sum.db")])  # type: ignore[no-untyped-call]
        samples = [(s.name, s.labels, s.value) for metric in merged for s in metric.samples]
        assert samples == [("jobs_total", {"queue": "a"}, 7.0)]


def test_prometheus_client_value_class_says_whether_it_is_file_backed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with contract(
        "prometheus-client",
        "ValueClass._multiprocess",
        "`values.ValueClass._multiprocess` is true exactly when values are file-backed",
    ):
        for directory, is_file_backed in (("", False), (str(tmp_path), True)):
            if directory:
                monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", directory)
            else:
                monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
            # What the library does once, when first imported.
            monkeypatch.setattr(values, "ValueClass", values.get_value_class())  # type: ignore[no-untyped-call]
            assert values_are_file_backed() is is_file_backed


def stand_in_connection() -> Any:
    """A pool creator; the pool itself calls only rollback (on return) and close (on discard)."""

    class Connection:
        def rollback(self) -> None:
            pass

        def close(self) -> None:
            pass

    return Connection()


class RecordingPool(AsyncAdaptedQueuePool):
    """Records each call of the two methods InstrumentedAsyncQueuePool overrides."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[str] = []

    def _do_get(self) -> ConnectionPoolEntry:
        try:
            record = super()._do_get()
        except sa_exc.TimeoutError:
            self.calls.append("get: timeout")
            raise
        self.calls.append(f"get: {self.checkedout()} out")
        return record

    def _do_return_conn(self, record: ConnectionPoolEntry) -> None:
        super()._do_return_conn(record)
        self.calls.append(f"return: {self.checkedout()} out")


async def test_sqlalchemy_queue_pool_checks_out_and_in_through_do_get_and_do_return_conn() -> None:
    with contract(
        "SQLAlchemy",
        "_do_get",
        "each queue-pool checkout and checkin is one _do_get/_do_return_conn",
    ):
        assert parameters(QueuePool._do_get) == ["self"]
        assert parameters(QueuePool._do_return_conn) == ["self", "record"]
        pool = RecordingPool(stand_in_connection, pool_size=1, max_overflow=1, timeout=0.001)

        first = await greenlet_spawn(pool.connect)
        second = await greenlet_spawn(pool.connect)  # overflow
        with pytest.raises(sa_exc.TimeoutError):
            await greenlet_spawn(pool.connect)
        await greenlet_spawn(first.close)
        await greenlet_spawn(second.close)
        reused = await greenlet_spawn(pool.connect)
        await greenlet_spawn(reused.close)

        # Exactly one call per checkout, timeout and checkin, with the counts already updated.
        assert pool.calls == [
            "get: 1 out",
            "get: 2 out",
            "get: timeout",
            "return: 1 out",
            "return: 0 out",
            "get: 1 out",
            "return: 0 out",
        ]


class StandInWorker:
    """What uvicorn's supervisor asks of a worker process, without a process."""

    pids = itertools.count(1000)

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket]) -> None:
        self.pid = next(self.pids)
        self.exitcode: int | None = None
        self.is_dead = False

    def start(self) -> None:
        pass

    def is_alive(self, timeout: float = 5) -> bool:
        return not self.is_dead

    def kill(self) -> None:
        self.exitcode = -9

    def join(self) -> None:
        pass

    def terminate(self) -> None:
        self.exitcode = 0


class ScriptedLoop(threading.Event):
    """uvicorn's `should_exit`, whose wait between loops runs the next step instead of sleeping;
    set once the steps are done."""

    def __init__(self, steps: list[Callable[[], None]]) -> None:
        super().__init__()
        self.steps = steps

    def wait(self, timeout: float | None = None) -> bool:
        if self.steps:
            self.steps.pop(0)()
        else:
            self.set()
        return self.is_set()


def test_uvicorn_supervisor_reports_each_worker_gone_once(monkeypatch: pytest.MonkeyPatch) -> None:
    gone: list[int] = []
    monkeypatch.setattr(supervisor, "mark_worker_dead", gone.append)
    monkeypatch.setattr(uvicorn_multiprocess, "Process", StandInWorker)
    monkeypatch.setattr(signal, "signal", lambda *_: None)  # uvicorn installs handlers
    with contract(
        "uvicorn",
        "keep_subprocess_alive",
        "Multiprocess.run calls keep_subprocess_alive each loop, which replaces dead workers",
    ):
        assert parameters(uvicorn_multiprocess.Multiprocess.keep_subprocess_alive) == ["self"]
        config = uvicorn.Config("service.workers.entry:create_worker_app", workers=2)
        workers = supervisor.WorkerSupervisor(config, sockets=[])

        def kill_first() -> None:  # dies before the first loop; uvicorn replaces it
            workers.processes[0].is_dead = True  # type: ignore[attr-defined]

        def replace_second() -> None:  # as SIGHUP's restart_all does, outside the hook
            workers.processes[1] = uvicorn_multiprocess.Process(config, [])

        workers.should_exit = ScriptedLoop([kill_first, lambda: None, replace_second])
        workers.run()
        assert [worker.pid for worker in workers.processes] == [1002, 1003]

    assert gone == [1000, 1001]


def test_typer_raises_its_vendored_click_exceptions() -> None:
    with contract(
        "typer", "typer._click", "parse errors are the classes in typer._click.exceptions"
    ):
        exceptions = importlib.import_module("typer._click.exceptions")
        app = typer.Typer(no_args_is_help=True)
        app.command("first")(lambda: None)
        app.command("second")(lambda: None)

        with pytest.raises(exceptions.NoArgsIsHelpError):
            app([], prog_name="demo", standalone_mode=False)
        with pytest.raises(exceptions.UsageError) as caught:
            app(["first", "--bogus"], prog_name="demo", standalone_mode=False)
        assert caught.value.ctx.command_path == "demo first"
        assert caught.value.format_message() == "No such option: --bogus"
        assert issubclass(exceptions.UsageError, exceptions.ClickException)
        assert caught.value.exit_code == 2


def test_pgserver_keeps_its_binaries_in_postgres_bin_path() -> None:
    if importlib.util.find_spec("pgserver") is None:
        pytest.skip("pgserver is a development tool (requirements-dev.txt), not installed here")
    with contract(
        "pgserver", "pgserver._commands", "_commands.POSTGRES_BIN_PATH holds the binaries"
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
            commands = importlib.import_module("pgserver._commands")
        bin_path = commands.POSTGRES_BIN_PATH
        assert isinstance(bin_path, Path)
        # What scripts/devservices.py runs from it.
        for binary in ("postgres", "pg_ctl"):
            assert os.access(bin_path / binary, os.X_OK), bin_path / binary
