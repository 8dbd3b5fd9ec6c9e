"""What the self-test's integration tests share: test-sized settings and servers on free ports."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from service.config import Settings
from service.harness.gatekey import cli_env, serve_command
from service.harness.processes import free_port
from service.selftest.model import CheckResult
from service.selftest.target import server_process


def stack_settings_for(settings: Settings) -> Settings:
    """Small pools (PostgreSQL's 100 connections are shared) and a Redis timeout that a busy
    two-core test machine does not trip, so the healthy stack stays exact."""
    return settings.model_copy(
        update={"database_pool_size": 5, "database_pool_max_overflow": 5, "redis_timeout": 0.5}
    )


class Quiet:
    """Progress nobody watches."""

    def status(self, text: str) -> None:
        pass

    def done(self, result: CheckResult) -> None:
        pass


@contextlib.asynccontextmanager
async def serving(
    command: list[str], env: dict[str, str], log: Path, port: int
) -> AsyncIterator[str]:
    """A server process until it answers `/readyz`; its URL; stopped by pid afterwards."""
    async with (
        httpx.AsyncClient(timeout=10) as client,
        server_process(command, env=env, port=port, log=log, client=client) as deployment,
    ):
        yield deployment.url


@contextlib.asynccontextmanager
async def gatekey_serving(settings: Settings, workers: int, log: Path) -> AsyncIterator[str]:
    """`gatekey serve --workers N` with `settings`, on a free port."""
    port = free_port()
    async with serving(serve_command(port, workers=workers), cli_env(settings), log, port) as url:
        yield url
