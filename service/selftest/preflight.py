"""Pre-flight: settings, packages, PostgreSQL, Redis, migrations, pool sizing, test discovery."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

from redis.exceptions import RedisError

from service.config import Settings
from service.errors import InvalidInput
from service.redis.client import create_redis
from service.selftest import fixes
from service.selftest.dbprobe import DatabaseProbe
from service.selftest.gatekey_cli import GatekeyCli
from service.selftest.model import CheckResult, Figure, Phase, judge, one_line
from service.workers.sizing import ConnectionBudget, plan_workers, read_connection_budget

CHECKOUT = Path(__file__).resolve().parents[2]
_COLLECTED_RE = re.compile(r"(\d+) tests? collected")
_SUBPROCESS_TIMEOUT_S = 180.0
# Reachability, not latency: a Redis across a slow link still answers this probe.
_REDIS_PROBE_TIMEOUT_S = 2.0
SERVE_HERE = "gatekey serve here (--workers, WEB_CONCURRENCY, else CPUs)"


def settings_check(error: str | None) -> CheckResult:
    return judge(
        Phase.PREFLIGHT,
        "settings",
        passed=error is None,
        figures={"error": error} if error else {},
        criterion="every variable parses and validates",
        fix=fixes.SETTINGS,
    )


async def _run(*args: str, cwd: Path | None = None) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *args, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), _SUBPROCESS_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        return -1, f"timed out after {_SUBPROCESS_TIMEOUT_S:.0f} s"
    return process.returncode or 0, out.decode(errors="replace").strip()


def _last_line(text: str) -> str:
    return (text.splitlines() or [""])[-1][:200]


async def pip_check() -> CheckResult:
    code, out = await _run(sys.executable, "-m", "pip", "check")
    return judge(
        Phase.PREFLIGHT,
        "pip-check",
        passed=code == 0,
        figures={"pip_check": _last_line(out)},
        criterion="`pip check` finds no broken requirement",
        fix=fixes.PIP_CHECK,
    )


async def postgres(settings: Settings) -> CheckResult:
    try:
        async with DatabaseProbe.connect(settings) as probe:
            version = await probe.server_version()
        figures: dict[str, Figure] = {"server_version": version}
    except Exception as exc:  # whatever stops the connection is the finding
        figures = {"error": one_line(exc)}
    return judge(
        Phase.PREFLIGHT,
        "postgres",
        passed="error" not in figures,
        figures=figures,
        criterion="DATABASE_URL accepts a connection",
        fix=fixes.POSTGRES,
    )


async def redis_reachable(settings: Settings) -> CheckResult:
    client = create_redis(settings, timeout=_REDIS_PROBE_TIMEOUT_S)
    try:
        info = await client.info("server")
        figures: dict[str, Figure] = {"redis_version": str(info.get("redis_version"))}
    except (RedisError, OSError) as exc:
        figures = {"error": one_line(exc)}
    finally:
        await client.aclose()
    return judge(
        Phase.PREFLIGHT,
        "redis",
        passed="error" not in figures,
        figures=figures,
        criterion="REDIS_URL answers",
        fix=fixes.REDIS,
    )


async def migrations_at_head(cli: GatekeyCli) -> CheckResult:
    result = await cli.run("db", "check")
    return judge(
        Phase.PREFLIGHT,
        "migrations-at-head",
        passed=result.returncode == 0,
        figures={
            "db_check": _last_line(
                result.stdout if result.returncode == 0 else result.last_error_line
            )
        },
        criterion="`gatekey db check`: database at head, no drift",
        fix=fixes.MIGRATIONS,
    )


def planned_workers(
    settings: Settings, requested: int | None, budget: ConnectionBudget | None
) -> int:
    """The worker count `gatekey serve` starts on this host: `requested`, else WEB_CONCURRENCY,
    else the CPUs that fit; `InvalidInput` when they do not fit."""
    return plan_workers(
        requested=requested if requested is not None else settings.web_concurrency,
        cpu_count=os.cpu_count() or 1,
        per_worker=settings.database_pool_size + settings.database_pool_max_overflow,
        budget=budget,
    )


async def pool_sizing(
    settings: Settings, workers: int | None, *, source: str = SERVE_HERE
) -> CheckResult:
    """Sized for the deployment's workers: `workers` as `source` gives them. Unknown workers of a
    deployment elsewhere are not judged: this host's CPU count says nothing of them."""
    per_worker = settings.database_pool_size + settings.database_pool_max_overflow
    unknown = workers is None and source != SERVE_HERE
    figures: dict[str, Figure] = {"per_worker": per_worker, "workers_from": source}
    try:
        budget = await read_connection_budget(settings)
        if budget is None:  # behind PgBouncer, which decides the server connections
            figures["available"] = "PgBouncer's max_client_conn"
        else:
            figures |= {"max_connections": budget.max_connections, "reserved": budget.reserved}
        if unknown:
            figures["workers"] = "not known"
            if budget is not None:
                figures["fitting_workers"] = budget.available // per_worker
        else:
            count = planned_workers(settings, workers, budget)
            figures |= {"workers": count, "needed": count * per_worker}
            if budget is not None:
                figures["available"] = budget.available
    except InvalidInput as exc:
        figures["error"] = exc.message
    except Exception as exc:  # an unreachable database is also reported by `postgres`
        figures["error"] = one_line(exc)
    return judge(
        Phase.PREFLIGHT,
        "pool-sizing",
        passed="error" not in figures,
        warned=unknown,
        figures=figures,
        criterion="the deployment's workers × (pool + overflow) ≤ max_connections − reserved "
        "connections; not judged when its worker count is not known",
        fix=fixes.WORKER_BUDGET if not unknown else "give --workers N to judge the pool sizing",
    )


async def tests_discoverable() -> CheckResult:
    # Installed from a wheel there is no test suite; a stray site-packages/tests is not ours.
    if not ((CHECKOUT / "tests").is_dir() and (CHECKOUT / "pyproject.toml").is_file()):
        return judge(
            Phase.PREFLIGHT,
            "tests-discoverable",
            passed=True,
            warned=True,
            figures={"tests": "not a checkout"},
            criterion="pytest --collect-only finds tests",
            fix=fixes.TESTS,
        )
    code, out = await _run(sys.executable, "-m", "pytest", "--collect-only", "-q", cwd=CHECKOUT)
    found = _COLLECTED_RE.search(out)
    count = int(found.group(1)) if found else 0
    return judge(
        Phase.PREFLIGHT,
        "tests-discoverable",
        passed=code == 0 and count > 0,
        figures={"tests": count} if code == 0 else {"tests": count, "error": _last_line(out)},
        criterion="`pytest --collect-only -q` exits 0 and finds tests",
        fix=fixes.TESTS,
    )


PREFLIGHT_CHECKS = (
    "settings",
    "pip-check",
    "postgres",
    "redis",
    "migrations-at-head",
    "pool-sizing",
    "tests-discoverable",
)


async def preflight_checks(
    settings: Settings,
    *,
    workers: int | None,
    workers_source: str = SERVE_HERE,
    only: frozenset[str] | None = None,
) -> list[CheckResult]:
    """The chosen pre-flight checks after the settings loaded, run side by side."""
    cli = GatekeyCli(settings)
    pending = {
        "pip-check": pip_check,
        "postgres": lambda: postgres(settings),
        "redis": lambda: redis_reachable(settings),
        "migrations-at-head": lambda: migrations_at_head(cli),
        "pool-sizing": lambda: pool_sizing(settings, workers, source=workers_source),
        "tests-discoverable": tests_discoverable,
    }
    chosen = [start() for name, start in pending.items() if only is None or name in only]
    settings_ok = [settings_check(None)] if only is None or "settings" in only else []
    return [*settings_ok, *await asyncio.gather(*chosen)]
