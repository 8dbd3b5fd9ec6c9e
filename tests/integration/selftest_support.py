"""What the self-test's integration tests share: test-sized settings and servers on free ports."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from service.config import Settings
from service.selftest.gatekey_cli import GatekeyCli
from service.selftest.model import CheckResult
from service.selftest.target import free_port, server_process


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
    cli, port = GatekeyCli(settings), free_port()
    command = [*cli.executable, "serve", "--port", str(port), "--workers", str(workers)]
    async with serving(command, cli.env(), log, port) as url:
        yield url
