"""One self-test run: which checks, in which order, against which target; ends in a `Report`."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import httpx
from sqlalchemy import exc as sa_exc

from service.config import Settings
from service.selftest import (
    checks_background,
    checks_fullstack,
    checks_pairs,
    checks_parts,
    fixes,
)
from service.selftest.context import Context, KeyShelf
from service.selftest.dbprobe import DatabaseProbe
from service.selftest.gatekey_cli import GatekeyCli
from service.selftest.load_keys import mint_load_keys
from service.selftest.load_runs import (
    LOAD_CHECKS,
    LoadPlan,
    judge_load,
    memory_samples,
    run_load_steps,
)
from service.selftest.logscan import LogWatch, server_log_check
from service.selftest.model import (
    CheckResult,
    LoadStep,
    MemorySample,
    Outcome,
    Phase,
    Report,
    SelftestAborted,
    SoakSample,
    one_line,
)
from service.selftest.preflight import (
    PREFLIGHT_CHECKS,
    SERVE_HERE,
    planned_workers,
    preflight_checks,
    settings_check,
)
from service.selftest.soak import SOAK_CHECK, run_soak
from service.selftest.suite import SUITE_CHECK, integration_suite
from service.selftest.target import SERVER_LOG, Deployment, own_server
from service.selftest.verdict import decide
from service.workers.sizing import read_connection_budget


@dataclass(frozen=True, slots=True)
class ProbeCheck:
    phase: Phase
    run: Callable[[Context], Awaitable[CheckResult]]
    keys: tuple[str, ...] = ()  # the test keys it needs, made through the CLI ahead of time
    # Works on a scratch database of its own, never the deployment: runs beside the others.
    is_aside: bool = False


# Checks that send their own requests, in running order, on a quiet deployment before the load.
PROBE_CHECKS = {
    "health": ProbeCheck(Phase.PARTS, checks_parts.health),
    "keys": ProbeCheck(Phase.PARTS, checks_parts.keys, ("load",)),
    "limiter": ProbeCheck(Phase.PARTS, checks_parts.limiter, ("limiter",)),
    "workers": ProbeCheck(Phase.PARTS, checks_parts.workers),
    "metrics": ProbeCheck(Phase.PARTS, checks_parts.metrics, ("load",)),
    "key-validates": ProbeCheck(Phase.PAIRS, checks_pairs.key_validates, ("load",)),
    "revoke-within-1s": ProbeCheck(Phase.PAIRS, checks_pairs.revoke, ("revoke",)),
    "exact-limit": ProbeCheck(Phase.PAIRS, checks_pairs.exact_limit, ("exact",)),
    "migration-chain": ProbeCheck(
        Phase.FULL_STACK, checks_fullstack.migration_chain, is_aside=True
    ),
    "metric-accuracy": ProbeCheck(Phase.FULL_STACK, checks_fullstack.metric_accuracy, ("load",)),
    "usage-accounted": ProbeCheck(Phase.FULL_STACK, checks_background.usage_accounted, ("usage",)),
    "key-feed": ProbeCheck(Phase.FULL_STACK, checks_background.key_feed, ("feed",)),
    "breaker-closed": ProbeCheck(Phase.FULL_STACK, checks_background.breaker_closed, ("load",)),
}
# Judged when the run ends, from everything the server wrote meanwhile.
LOG_CHECK = "server-log"
# Run only when asked for (`--soak DURATION`, `--suite`): they take minutes.
ALL_CHECKS = (*PREFLIGHT_CHECKS, *PROBE_CHECKS, *LOAD_CHECKS, LOG_CHECK, SOAK_CHECK, SUITE_CHECK)
# What a misbehaving deployment makes a check meet: recorded as that check failing, not a crash.
DEPLOYMENT_ERRORS = (httpx.HTTPError, sa_exc.SQLAlchemyError, OSError, ValueError, KeyError)
DEFAULT_LOAD = LoadPlan(users=(10, 50, 100), duration_s=20.0)
_PHASES = list(Phase)
_URL_READY_TIMEOUT_S = 10.0


class Progress(Protocol):
    def status(self, text: str) -> None: ...

    def done(self, result: CheckResult) -> None: ...


@dataclass(frozen=True, slots=True)
class Options:
    url: str | None = None
    load: LoadPlan = DEFAULT_LOAD
    workers: int | None = None
    baseline: tuple[LoadStep, ...] = ()
    only: frozenset[str] | None = None
    server_logs: tuple[Path, ...] = ()  # with `url`: the deployment's logs to scan
    soak_s: float | None = None  # hold one load level this long after the load steps
    suite: bool = False  # run the integration suite from the checkout

    def chosen(self) -> frozenset[str]:
        if self.only is None:
            return frozenset(ALL_CHECKS)
        unknown = sorted(self.only - set(ALL_CHECKS))
        if unknown:
            raise SelftestAborted(
                f"unknown check {', '.join(unknown)}; known: {', '.join(ALL_CHECKS)}"
            )
        return self.only


def did_not_complete(phase: Phase, name: str, exc: Exception) -> CheckResult:
    return CheckResult(
        phase, name, Outcome.FAIL, {"error": one_line(exc)}, "runs to completion", fixes.UNEXPECTED
    )


@dataclass(frozen=True, slots=True)
class WorkerCount:
    """How many workers the deployment runs, and how the self-test knows."""

    count: int | None
    source: str


async def _deployment_workers(settings: Settings, options: Options) -> WorkerCount:
    """Given with --workers; for the server the self-test starts, the count it starts it with
    (what `gatekey serve` would choose); with --url, the workers its /metrics report, if any."""
    if options.workers is not None:
        return WorkerCount(options.workers, "--workers")
    if options.url is None:
        try:
            budget = await read_connection_budget(settings)
            return WorkerCount(planned_workers(settings, None, budget), "the server it starts")
        except Exception:  # pool-sizing names why; the server then refuses to start
            return WorkerCount(None, SERVE_HERE)
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            pids = await Deployment(options.url, client).worker_pids()
    except (httpx.HTTPError, ValueError):
        pids = set()
    return WorkerCount(len(pids) or None, f"/metrics of {options.url}")


@asynccontextmanager
async def _target(
    cli: GatekeyCli, options: Options, workers: int | None, workdir: Path, client: httpx.AsyncClient
) -> AsyncIterator[Deployment]:
    if options.url is None:
        async with own_server(cli, workers=workers, workdir=workdir, client=client) as own:
            yield own
        return
    deployment = Deployment(options.url, client)
    await deployment.wait_ready(_URL_READY_TIMEOUT_S)
    yield deployment


async def _open_context(
    stack: AsyncExitStack,
    cli: GatekeyCli,
    keys: KeyShelf,
    options: Options,
    workers: WorkerCount,
    workdir: Path,
) -> Context:
    client = await stack.enter_async_context(httpx.AsyncClient(timeout=10))
    deployment = await stack.enter_async_context(
        _target(cli, options, workers.count, workdir, client)
    )
    try:
        probe = await stack.enter_async_context(DatabaseProbe.connect(cli.settings))
    except Exception as exc:  # any reason the database refuses us stops the run
        raise SelftestAborted(f"PostgreSQL unreachable: {one_line(exc)}") from None
    # With --url and no --workers, the count /metrics reported is what `workers` measures.
    expected = workers.count if options.workers is not None or options.url is None else None
    return Context(deployment, cli, probe, keys, expected)


class _Run:
    """The results of one run as they come in, each reported to `progress` at once."""

    def __init__(self, options: Options, progress: Progress) -> None:
        self.options = options
        self.chosen = options.chosen()
        self.progress = progress
        self.results: list[CheckResult] = []
        self.steps: list[LoadStep] = []
        self.memory: list[MemorySample] = []
        self.soak_samples: list[SoakSample] = []
        self.started = time.monotonic()

    def record(self, result: CheckResult) -> None:
        self.results.append(result)
        self.progress.done(result)

    @property
    def needs_load(self) -> bool:
        return bool(self.chosen & set(LOAD_CHECKS)) or bool(self.options.baseline)

    @property
    def needs_soak(self) -> bool:
        return self.options.soak_s is not None and SOAK_CHECK in self.chosen

    @property
    def needs_suite(self) -> bool:
        return self.options.suite and SUITE_CHECK in self.chosen

    @property
    def needs_target(self) -> bool:
        return bool(self.chosen & {*PROBE_CHECKS, LOG_CHECK}) or self.needs_load or self.needs_soak

    def key_purposes(self) -> set[str]:
        probes = [PROBE_CHECKS[name] for name in self.chosen & set(PROBE_CHECKS)]
        return {key for probe in probes for key in probe.keys} | (
            {"load"} if self.needs_load else set()
        )

    async def preflight(self, settings: Settings, workers: WorkerCount) -> None:
        if self.chosen & set(PREFLIGHT_CHECKS):
            self.progress.status("pre-flight")
            for result in await preflight_checks(
                settings, workers=workers.count, workers_source=workers.source, only=self.chosen
            ):
                self.record(result)

    async def against_target(
        self, stack: AsyncExitStack, cli: GatekeyCli, keys: KeyShelf, workers: WorkerCount
    ) -> str:
        """The checks that talk to the deployment, in order; its URL."""
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gatekey-st-")))
        if LOG_CHECK in self.chosen:
            watch = _log_watch(self.options, workdir)
            # Pushed before the server starts, so called after it stopped: its last words count.
            stack.callback(
                lambda: self.record(server_log_check(watch.findings() if watch else None))
            )
        url = self.options.url
        self.progress.status("starting a server" if url is None else f"reaching {url}")
        ctx = await _open_context(stack, cli, keys, self.options, workers, workdir)
        load_keys = None
        if self.needs_load:  # minted while the probes run
            load_keys = asyncio.create_task(
                mint_load_keys(
                    cli, self.options.load.keys, workdir, name=keys.name_for("load-rotation")
                )
            )
            stack.callback(load_keys.cancel)
        await self.probes(ctx)
        if load_keys is not None:
            await self.load(ctx, load_keys)
        if self.needs_soak:
            await self.soak(ctx, workdir)
        return ctx.deployment.url

    async def probes(self, ctx: Context) -> None:
        """The probe checks in order, one at a time; those set aside run beside them."""
        chosen = [(name, probe) for name, probe in PROBE_CHECKS.items() if name in self.chosen]
        async with asyncio.TaskGroup() as aside:
            for name, probe in chosen:
                if probe.is_aside:
                    aside.create_task(self.probe(ctx, name, probe))
            for name, probe in chosen:
                if not probe.is_aside:
                    self.progress.status(name)
                    await self.probe(ctx, name, probe)

    async def probe(self, ctx: Context, name: str, probe: ProbeCheck) -> None:
        started = time.monotonic()
        try:
            result = await probe.run(ctx)
        except DEPLOYMENT_ERRORS as exc:
            result = did_not_complete(probe.phase, name, exc)
        self.record(replace(result, duration_s=time.monotonic() - started))

    async def load(self, ctx: Context, load_keys: Awaitable[Path]) -> None:
        options = self.options
        try:
            runs = await run_load_steps(
                ctx, options.load, await load_keys, started=self.started,
                progress=self.progress.status,
            )  # fmt: skip
        except DEPLOYMENT_ERRORS as exc:
            self.record(did_not_complete(Phase.LOAD, "load-steps", exc))
            return
        self.memory = memory_samples(runs)
        judged, self.steps = judge_load(ctx, runs, self.chosen, options.load, options.baseline)
        for result in judged:
            self.record(result)

    async def soak(self, ctx: Context, workdir: Path) -> None:
        assert self.options.soak_s is not None
        try:
            result, self.soak_samples = await run_soak(
                ctx, self.options.soak_s, workdir, started=self.started,
                progress=self.progress.status,
            )  # fmt: skip
        except DEPLOYMENT_ERRORS as exc:
            result = did_not_complete(Phase.LOAD, SOAK_CHECK, exc)
        self.record(result)

    async def suite(self, cli: GatekeyCli) -> None:
        with tempfile.TemporaryDirectory(prefix="gatekey-suite-") as workdir:
            self.record(await integration_suite(cli, Path(workdir), self.progress.status))


def _log_watch(options: Options, workdir: Path) -> LogWatch | None:
    """The logs the run is judged by: our own server's output, else the ones named (if any)."""
    if options.url is None:
        return LogWatch([workdir / SERVER_LOG])
    return LogWatch(list(options.server_logs)) if options.server_logs else None


async def _migrate(cli: GatekeyCli) -> None:
    result = await cli.run("db", "upgrade")
    if result.returncode != 0:
        raise SelftestAborted(f"`gatekey db upgrade` failed: {result.last_error_line}")


async def run_selftest(settings: Settings, options: Options, progress: Progress) -> Report:
    started_at = datetime.now(UTC)
    run = _Run(options, progress)
    cli = GatekeyCli(settings)
    target = options.url or "not started"
    async with AsyncExitStack() as stack:
        keys = KeyShelf(cli)
        stack.push_async_callback(keys.aclose)
        if run.needs_target:
            if options.url is None:
                progress.status("gatekey db upgrade")
                await _migrate(cli)
            keys.prefetch(run.key_purposes())  # made while the pre-flight runs
        workers = await _deployment_workers(settings, options)
        # The pre-flight is mostly other processes (pip, pytest): the server starts meanwhile.
        preflight = asyncio.create_task(run.preflight(settings, workers))
        stack.callback(preflight.cancel)
        if run.needs_target:
            target = await run.against_target(stack, cli, keys, workers)
        await preflight
    if run.needs_suite:
        await run.suite(cli)
    checks = sorted(run.results, key=lambda result: _PHASES.index(result.phase))
    duration_s = time.monotonic() - run.started
    return Report(
        decide(checks),
        started_at,
        duration_s,
        target,
        checks,
        run.steps,
        run.memory,
        run.soak_samples,
    )


def settings_failed_report(error: str, options: Options) -> Report:
    """Settings that do not load stop every other check: the report is the `settings` check."""
    checks = [settings_check(error)]
    return Report(decide(checks), datetime.now(UTC), 0.0, options.url or "not started", checks)
