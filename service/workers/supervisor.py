"""The supervised worker processes: uvicorn's own supervisor, plus metric clean-up for dead workers.

uvicorn's supervisor already replaces a dead worker, health-checks the living and turns SIGTERM
into a graceful stop of every worker (stop accepting, finish in-flight requests, run the lifespan
shutdown). It lacks only a hook on worker death, which prometheus-client's multiprocess mode
needs to drop the dead pid's live gauges and fold its counts into the archive; the subclass adds
exactly that, over `keep_subprocess_alive`, a uvicorn internal that
tests/unit/test_library_contracts.py checks against the installed version.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import uvicorn
from uvicorn.supervisors import Multiprocess

from service.config import Settings
from service.metrics.multiprocess import (
    MULTIPROC_DIR_ENV,
    mark_worker_dead,
    prepare_multiprocess_dir,
)
from service.workers import WORKER_COUNT_ENV

GRACEFUL_SHUTDOWN_S = 30
# uvicorn's default of 5 s kills workers that are merely slow to import on a loaded 2-core host.
HEALTHCHECK_TIMEOUT_S = 30


class WorkerSupervisor(Multiprocess):
    """uvicorn's supervisor that cleans up the metric files of every worker that is gone.

    uvicorn calls `keep_subprocess_alive` once per loop (every 0.5 s); it replaces dead workers.
    """

    # The previous loop's pids, so workers replaced by SIGHUP (restart_all) or dropped by SIGTTOU,
    # which happen outside keep_subprocess_alive, are cleaned up too.
    _known_pids: frozenset[int] = frozenset()

    def keep_subprocess_alive(self) -> None:
        # With the current pids too, so a worker that dies before the first loop is not missed.
        seen = self._known_pids | self._pids()
        super().keep_subprocess_alive()
        self._known_pids = self._pids()
        for pid in seen - self._known_pids:
            mark_worker_dead(pid)

    def _pids(self) -> frozenset[int]:
        return frozenset(p.pid for p in self.processes if p.pid is not None)


def run_workers(settings: Settings, *, host: str, port: int, count: int) -> None:
    """Bind once, start `count` workers that share the socket, supervise until SIGINT/SIGTERM."""
    configured_dir = os.environ.get(MULTIPROC_DIR_ENV)
    metrics_dir = configured_dir or tempfile.mkdtemp(prefix="gatekey-metrics-")
    prepare_multiprocess_dir(metrics_dir)
    os.environ[WORKER_COUNT_ENV] = str(count)
    config = uvicorn.Config(
        "service.workers.entry:create_worker_app",
        factory=True,
        host=host,
        port=port,
        workers=count,
        log_level=settings.log_level.lower(),
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        timeout_worker_healthcheck=HEALTHCHECK_TIMEOUT_S,
        backlog=4096,
        # uvicorn's own X-Forwarded-For handling sets the client address the per-address limit
        # of failed verifications counts; only TRUSTED_PROXIES are believed (none by default,
        # not uvicorn's default of 127.0.0.1 or its FORWARDED_ALLOW_IPS variable).
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=settings.trusted_proxies or None,
    )
    try:
        WorkerSupervisor(config, sockets=[config.bind_socket()]).run()
    finally:
        if configured_dir is None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
