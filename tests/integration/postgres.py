"""PostgreSQL servers the tests own: a PgBouncer in transaction pooling mode in front of a
server, and a cluster of its own (initdb + pg_ctl on a free port) that a test may restart."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import make_url

from service.harness.processes import ProcessFailed, free_port, port_accepts, serving

# PostgreSQL and PgBouncer refuse to run as root: as root, they run as the `postgres` user.
SYSTEM_USER = "postgres" if os.geteuid() == 0 else None


def postgres_binary(name: str) -> str:
    """`initdb`, `pg_ctl`, ...: Debian keeps them off PATH, under /usr/lib/postgresql/<major>."""
    found = [*sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")), shutil.which(name)]
    for binary in found:
        if binary is not None:
            return binary
    raise ProcessFailed(f"{name} is not installed (apt-get install postgresql)")


def _owned_dir(prefix: str) -> Path:
    """A fresh directory the servers' user can write (pytest's tmp dirs are private to us)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if SYSTEM_USER is not None:
        shutil.chown(path, SYSTEM_USER, SYSTEM_USER)
    return path


def _as_server_user(command: list[str]) -> list[str]:
    return command if SYSTEM_USER is None else ["runuser", "-u", SYSTEM_USER, "--", *command]


def with_host(database_url: str, port: int) -> str:
    """`database_url` pointed at 127.0.0.1:`port`, the same database and user."""
    url = make_url(database_url).set(host="127.0.0.1", port=port)
    return url.render_as_string(hide_password=False)


@contextlib.contextmanager
def pgbouncer(upstream_url: str) -> Iterator[int]:
    """PgBouncer on a free port in transaction pooling mode, every database forwarded to the
    server of `upstream_url` (trust authentication, as the test server); yields its port.

    `DEALLOCATE ALL` after every transaction: gatekey names each statement uniquely behind
    PgBouncer, and without a reset those would pile up on the server connections.
    """
    upstream = make_url(upstream_url)
    workdir = _owned_dir("gk-pgbouncer-")
    port = free_port()
    (workdir / "userlist.txt").write_text(f'"{upstream.username or "postgres"}" ""\n')
    (workdir / "pgbouncer.ini").write_text(
        f"""[databases]
* = host={upstream.host or "127.0.0.1"} port={upstream.port or 5432}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {workdir / "userlist.txt"}
pool_mode = transaction
max_client_conn = 400
default_pool_size = 20
server_reset_query = DEALLOCATE ALL
server_reset_query_always = 1
"""
    )
    command = ["pgbouncer", str(workdir / "pgbouncer.ini")]
    if SYSTEM_USER is not None:
        command[1:1] = ["-u", SYSTEM_USER]
    try:
        with serving(
            command,
            port=port,
            log=workdir / "pgbouncer.log",
            ready=lambda server: port_accepts(server.port),
        ):
            yield port
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass(frozen=True, slots=True)
class OwnPostgres:
    """A cluster of the test's own: `url` reaches its `postgres` database as user postgres."""

    datadir: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def pg_ctl(self, *args: str) -> None:
        """`pg_ctl` on this cluster, waiting until it is done (`-w`). The server logs to a file:
        it would otherwise inherit our pipe, and `run` would wait for it to close."""
        log = self.datadir.parent / "postgres.log"
        subprocess.run(
            _as_server_user(
                [postgres_binary("pg_ctl"), "-D", str(self.datadir), "-l", str(log), "-w", *args]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )


@contextlib.contextmanager
def own_postgres() -> Iterator[OwnPostgres]:
    """initdb a cluster into a temp dir and start it on a free port (trust, 127.0.0.1 only, no
    unix socket); stopped (`-m immediate`) and removed afterwards."""
    workdir = _owned_dir("gk-postgres-")
    cluster = OwnPostgres(workdir / "data", free_port())
    subprocess.run(
        _as_server_user(
            [postgres_binary("initdb"), "-D", str(cluster.datadir), "-U", "postgres", "-A", "trust"]
        ),
        check=True,
        capture_output=True,
        timeout=120,
    )
    options = f"-p {cluster.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
    try:
        cluster.pg_ctl("start", "-o", options)
        yield cluster
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            cluster.pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(workdir, ignore_errors=True)
