"""The self-test judges what no client sees: the server's log, usage reaching PostgreSQL, the
key-change feed and the breaker; and it leaves no key of its own active, even when terminated.

Each fault runs in a real server: a database role that may not write usage (configuration that
exists), or an app variant built around the real app (`selftest_variants`).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import make_url, text

from service.config import Settings
from service.db import Database
from service.harness.gatekey import cli_env, gatekey_executable
from service.selftest import fixes
from service.selftest.checks_background import USAGE_REQUESTS
from service.selftest.model import Outcome, Verdict
from service.selftest.runner import Options, run_selftest
from tests.integration.selftest_support import (
    Quiet,
    checks_of,
    gatekey_serving,
    variant,
)

# Each runs a real self-test: minutes in all, so `make test-selftest` runs them (CI too).
pytestmark = pytest.mark.selftest

BACKGROUND = frozenset({"usage-accounted", "key-feed", "breaker-closed", "server-log"})
_ACTIVE_SELFTEST_KEYS = """
SELECT count(*) FROM api_keys
WHERE 'selftest' = ANY(scopes) AND (revoked_at IS NULL OR revoked_at > now())
  AND (expires_at IS NULL OR expires_at > now())
"""


async def _sql(database: Database, *statements: str) -> int | None:
    """Run statements outside any transaction; the last one's single value, if it has one."""
    async with database.engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        results = [await autocommit.execute(text(statement)) for statement in statements]
    return int(results[-1].scalar_one()) if results[-1].returns_rows else None


async def active_selftest_keys(database: Database) -> int:
    return await _sql(database, _ACTIVE_SELFTEST_KEYS) or 0


@contextlib.asynccontextmanager
async def role_without_usage_writes(
    settings: Settings, database: Database
) -> AsyncIterator[Settings]:
    """Settings whose DATABASE_URL logs in as a role that may do everything but write usage."""
    role = f"gk_nousage_{secrets.token_hex(4)}"
    await _sql(
        database,
        f"CREATE ROLE {role} LOGIN",
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
        f"REVOKE INSERT, UPDATE ON api_key_usage FROM {role}",
    )
    url = make_url(settings.database_url).set(username=role, password=None)
    try:
        yield settings.model_copy(
            update={"database_url": url.render_as_string(hide_password=False)}
        )
    finally:
        await _sql(database, f"DROP OWNED BY {role}", f"DROP ROLE {role}")


async def test_healthy_server_passes_background_checks_and_leaves_no_key(
    stack_settings: Settings, database: Database, tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    async with gatekey_serving(stack_settings, 2, log) as url:
        options = Options(url=url, only=BACKGROUND, server_logs=(log,))
        report = await run_selftest(stack_settings, options, Quiet())
        unjudged = await run_selftest(
            stack_settings, Options(url=url, only=frozenset({"server-log"})), Quiet()
        )
    checks = checks_of(report)
    assert {c.name: c.figures for c in report.checks if c.result is not Outcome.PASS} == {}
    assert report.verdict is Verdict.GO
    usage = checks["usage-accounted"].figures
    assert usage["admitted"] == usage["in_postgresql"] == USAGE_REQUESTS
    assert float(usage["flushes_ok"]) > 0
    assert float(usage["flushes_failed"]) == 0
    assert checks["key-feed"].figures["not_401_after_1s"] == 0
    assert checks["breaker-closed"].figures["fallback"] == 0
    assert checks["server-log"].figures["tracebacks"] == 0
    not_judged = checks_of(unjudged)["server-log"]
    assert not_judged.result is Outcome.WARN
    assert "not judged" in str(not_judged.figures["judged"])
    assert await active_selftest_keys(database) == 0


async def test_a_flusher_that_cannot_write_is_no_go(
    stack_settings: Settings, database: Database, tmp_path: Path
) -> None:
    """Every flush fails (the role may not write api_key_usage); every request is still 200."""
    log = tmp_path / "server.log"
    async with (
        role_without_usage_writes(stack_settings, database) as broken,
        gatekey_serving(broken, 2, log) as url,
    ):
        only = frozenset({"usage-accounted", "server-log"})
        options = Options(url=url, only=only, server_logs=(log,))
        report = await run_selftest(stack_settings, options, Quiet())
    usage, logs = checks_of(report)["usage-accounted"], checks_of(report)["server-log"]
    assert usage.result is Outcome.FAIL, usage.figures
    assert (usage.figures["admitted"], usage.figures["in_postgresql"]) == (USAGE_REQUESTS, 0)
    assert float(usage.figures["flushes_failed"]) > 0
    assert usage.fix == fixes.USAGE_ACCOUNTING
    assert "usage accounting" in usage.fix
    assert logs.result is Outcome.FAIL, logs.figures
    assert "service/usage/" in str(logs.figures["first_own_frame"]), logs.figures
    assert "permission denied for table api_key_usage" in str(logs.figures["first_error"])
    assert report.verdict is Verdict.NO_GO


async def test_an_exception_after_the_answer_is_no_go(
    stack_settings: Settings, tmp_path: Path
) -> None:
    """One API request in 20 raises after its 200 went out: only the log tells."""
    async with variant(stack_settings, "raising_app", tmp_path) as url:
        only = frozenset({"usage-accounted", "server-log"})
        log = tmp_path / "raising_app.log"
        report = await run_selftest(
            stack_settings, Options(url=url, only=only, server_logs=(log,)), Quiet()
        )
    usage, logs = checks_of(report)["usage-accounted"], checks_of(report)["server-log"]
    assert usage.result is Outcome.PASS, usage.figures  # every client saw its answer
    assert logs.result is Outcome.FAIL, logs.figures
    # Each worker counts its own requests: at least one of them reached 20 of the 60.
    assert int(logs.figures["tracebacks"]) >= 1
    assert "selftest_variants.py" in str(logs.figures["first_own_frame"])
    assert logs.figures["first_error"] == "RuntimeError: raised after the response"
    assert logs.fix is not None
    assert logs.fix.startswith(fixes.UNHANDLED_EXCEPTION)
    assert str(logs.figures["first_own_frame"]) in logs.fix
    assert report.verdict is Verdict.NO_GO


async def test_a_feed_that_reads_nothing_is_no_go(stack_settings: Settings, tmp_path: Path) -> None:
    """The feed polls on time but reads no change: a key revoked in SQL stays cached."""
    async with variant(stack_settings, "deaf_feed_app", tmp_path) as url:
        report = await run_selftest(
            stack_settings, Options(url=url, only=frozenset({"key-feed"})), Quiet()
        )
    feed = checks_of(report)["key-feed"]
    assert feed.result is Outcome.FAIL, feed.figures
    assert feed.figures["not_401_after_1s"] == feed.figures["requests_after_1s"]
    assert feed.fix == fixes.KEY_FEED
    assert report.verdict is Verdict.NO_GO


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
async def test_a_stopped_run_revokes_the_keys_made_so_far(
    stack_settings: Settings, database: Database, tmp_path: Path, stop: signal.Signals
) -> None:
    async with gatekey_serving(stack_settings, 2, tmp_path / "server.log") as url:
        process = await asyncio.create_subprocess_exec(
            gatekey_executable(), "selftest", "--url", url,
            "--only", "usage-accounted,key-feed,exact-limit",
            env=cli_env(stack_settings),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while await active_selftest_keys(database) < 3:
                assert time.monotonic() < deadline, "the self-test made no keys in 60 s"
                await asyncio.sleep(0.1)
            process.send_signal(stop)
            _, stderr = await asyncio.wait_for(process.communicate(), 60)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr.decode()
    assert await active_selftest_keys(database) == 0
