"""`gatekey selftest` and `gatekey preflight`: the checklist run against a deployment, a verdict."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape
from rich.status import Status

from cli.common import EXIT_USAGE, console, fail, loaded_settings
from service.config import Settings, SettingsError, load_settings
from service.durations import parse_duration
from service.errors import InvalidInput
from service.selftest.load_checks import (
    MIN_STEP_REQUESTS,
    P99_CEILING_MS,
    RPS_FLOOR,
    StepLimits,
)
from service.selftest.load_runs import LoadPlan
from service.selftest.model import CheckResult, Outcome, SelftestAborted, Verdict
from service.selftest.preflight import preflight_checks, settings_check
from service.selftest.report_html import write_html
from service.selftest.report_json import read_baseline, write_json
from service.selftest.report_table import RESULT_STYLE, check_table, figures_text, render
from service.selftest.runner import Options, run_selftest, settings_failed_report
from service.selftest.soak import SOAK_USERS
from service.selftest.suite import require_checkout

DEFAULT_DURATION = "20s"
QUICK_DURATION = "10s"  # at most: a quick step but the last ends after MIN_STEP_REQUESTS requests
EXIT_NO_GO = 1
EXIT_INTERRUPTED = 130
MIN_SOAK_S = 60  # a quarter is warm-up; the rest must hold a few 10 s samples
T = TypeVar("T")
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def until_terminated(work: Coroutine[Any, Any, T]) -> T:
    """`work`, cancelled by Ctrl-C or SIGTERM, so its clean-up runs either way (a second signal
    does not cut the clean-up short). A run a signal reached ends as interrupted even when
    something inside it let the cancellation pass (a library that takes it for its own timeout):
    it never reports a verdict the operator stopped."""
    task = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    received: list[signal.Signals] = []

    def stop(signum: signal.Signals) -> None:
        if not received:
            task.cancel()
        received.append(signum)

    for signum in _STOP_SIGNALS:
        loop.add_signal_handler(signum, stop, signum)
    try:
        result = await task
    finally:
        for signum in _STOP_SIGNALS:
            loop.remove_signal_handler(signum)
    if received:
        raise asyncio.CancelledError
    return result


class ConsoleProgress:
    """A spinner naming the current step and one line per finished check."""

    def __init__(self, status: Status) -> None:
        self._status = status

    def status(self, text: str) -> None:
        self._status.update(f"selftest: {text}")

    def done(self, result: CheckResult) -> None:
        style = RESULT_STYLE[result.result]
        console.print(
            f"[{style}]{result.result.value:>4}[/{style}] {result.phase.value}/{result.name}  "
            f"[dim]{escape(figures_text(result.figures))}[/dim]",
            highlight=False,
        )


def settings_of_run(ctx: typer.Context) -> Settings | SettingsError:
    """The settings, or why they do not load: the pre-flight's `settings` check judges that
    (a NO-GO report), where any other command stops with one line."""
    try:
        return loaded_settings(ctx)
    except SettingsError as exc:
        return exc


def _users(text: str) -> tuple[int, ...]:
    try:
        users = tuple(int(part) for part in text.split(","))
    except ValueError:
        users = ()
    if not users or min(users) < 1:
        fail(f"invalid --users {text!r}: expected counts such as 10,50,100", EXIT_USAGE)
    return users


def _seconds(text: str, *, option: str = "--duration", at_least: int = 1) -> float:
    try:
        seconds = parse_duration(text).total_seconds()
    except InvalidInput as exc:
        fail(exc.message, EXIT_USAGE)
    if seconds < at_least:
        fail(f"{option} must be at least {at_least}s", EXIT_USAGE)
    return seconds


def selftest(
    ctx: typer.Context,
    url: Annotated[
        str | None, typer.Option(help="A running deployment (default: start one).")
    ] = None,
    users: Annotated[str, typer.Option(help="Concurrent users of each load step.")] = "10,50,100",
    duration: Annotated[
        str | None, typer.Option(help=f"Each load step, e.g. 20s, 2m [default {DEFAULT_DURATION}].")
    ] = None,
    baseline: Annotated[Path | None, typer.Option(help="An earlier --json report.")] = None,
    json_file: Annotated[Path | None, typer.Option("--json", help="Write the JSON report.")] = None,
    html_file: Annotated[Path | None, typer.Option("--html", help="Write the HTML report.")] = None,
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            help=f"CI: load steps of {QUICK_DURATION}; all but the last (which the memory "
            f"check reads) end after {MIN_STEP_REQUESTS} requests.",
        ),
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1, help="Workers of the server it starts (with --url: the count expected)."
        ),
    ] = None,
    only: Annotated[
        str | None, typer.Option(help="Run only these checks (comma-separated).")
    ] = None,
    p99_ceiling: Annotated[
        float, typer.Option(min=1, help="Highest p99 in ms a load step may show.")
    ] = P99_CEILING_MS,
    rps_floor: Annotated[
        float, typer.Option(min=0, help="Lowest req/s a load step may serve.")
    ] = RPS_FLOOR,
    server_log: Annotated[
        list[Path] | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="With --url: a log of the deployment to scan for unhandled exceptions "
            "(repeatable); what is written to it during the run is judged.",
        ),
    ] = None,
    soak: Annotated[
        str | None,
        typer.Option(
            help=f"After the load steps, hold {SOAK_USERS} users this long (e.g. 30m) and "
            "fail on any resource that keeps growing."
        ),
    ] = None,
    suite: Annotated[
        bool, typer.Option("--suite", help="Also run the integration suite (from a checkout).")
    ] = False,
) -> None:
    """Run the integration checklist and load steps; exit 0 GO, 1 NO-GO, 2 could not run."""
    try:
        settings = settings_of_run(ctx)
        load = LoadPlan(
            users=_users(users),
            duration_s=_seconds(duration or (QUICK_DURATION if quick else DEFAULT_DURATION)),
            stop_after=MIN_STEP_REQUESTS if quick else None,
            limits=StepLimits(p99_ceiling_ms=p99_ceiling, rps_floor=rps_floor),
        )
        options = Options(
            url=url,
            load=load,
            workers=workers,
            baseline=tuple(read_baseline(baseline)) if baseline else (),
            only=frozenset(name.strip() for name in only.split(",")) if only else None,
            server_logs=tuple(server_log or ()),
            soak_s=_seconds(soak, option="--soak", at_least=MIN_SOAK_S) if soak else None,
            suite=suite,
        )
        if suite:
            require_checkout()
        if isinstance(settings, SettingsError):
            report = settings_failed_report(str(settings), options)
        else:
            with console.status("selftest: starting") as status:
                report = asyncio.run(
                    until_terminated(run_selftest(settings, options, ConsoleProgress(status)))
                )
    except SelftestAborted as exc:
        fail(f"selftest could not run: {exc}", EXIT_USAGE)
    except (KeyboardInterrupt, asyncio.CancelledError):
        fail("selftest interrupted; the keys it made are revoked", EXIT_INTERRUPTED)
    console.print(render(report))
    if json_file:
        write_json(report, json_file)
    if html_file:
        write_html(report, html_file)
    if report.verdict is not Verdict.GO:
        raise typer.Exit(EXIT_NO_GO)


def preflight(
    workers: Annotated[
        int | None, typer.Option(min=1, help="Workers to size the pools for.")
    ] = None,
) -> None:
    """Settings, packages, PostgreSQL, Redis, migrations, pool sizing and tests, as a table."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        results = [settings_check(str(exc))]
    else:
        results = asyncio.run(preflight_checks(settings, workers=workers))
    console.print(check_table(results, title="preflight"))
    failed = [result.name for result in results if result.result is Outcome.FAIL]
    if failed:
        fail(f"preflight failed: {', '.join(failed)}")
    console.print("[green]preflight passed[/green]")
