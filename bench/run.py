"""`make bench`: each contender served alone by uvicorn workers, warmed up, then measured."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import redis
from rich.console import Console

from bench import contenders, cpu, gatekey_setup, observe, profile, report
from bench.contenders import BIN, PATH, ROOT, SERVERS, BenchFailed, Launch, Probe
from bench.gatekey_setup import BenchDatabase
from bench.report import GATEKEY, MALFORMED, Measurement
from bench.wrk import WRK_MISSING, LoadSpec, run_wrk, wrk_path
from service.config import DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL
from service.harness.processes import ServerProcess, answers, serving
from service.keys.format import generate_key

# Wide enough for the table when the output is piped (make, CI logs).
console = Console(width=None if sys.stdout.isatty() else 140)


def _bench_database_url(url: str) -> str:
    """The same server as `url`, in a database of the benchmark's own."""
    server, _, database = url.rpartition("/")
    query = database.partition("?")[2]
    return f"{server}/gatekey_bench" + (f"?{query}" if query else "")


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--duration", type=float, default=10.0, help="measured seconds per contender"
    )
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds first")
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (1: see README)")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument(
        "--rounds", type=int, default=1, help="repeat everything; keep each contender's median"
    )
    parser.add_argument(
        "--only", default=",".join(SERVERS), help="comma list of bare,slowapi,gatekey"
    )
    parser.add_argument("--json", type=Path, default=ROOT / "reports" / "bench.json")
    server_url = os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
    parser.add_argument(
        "--database-url",
        default=_bench_database_url(server_url),
        help="dropped and re-created for the run (default: DATABASE_URL's server, gatekey_bench)",
    )
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", DEFAULT_REDIS_URL))
    parser.add_argument(
        "--profile", type=Path, help="then py-spy gatekey's workers into this folder"
    )
    args = parser.parse_args(argv)
    if min(args.rounds, args.workers, args.connections, args.threads) < 1:
        parser.error("--rounds, --workers, --connections and --threads must be at least 1")
    unknown = set(args.only.split(",")) - set(SERVERS)
    if unknown:
        parser.error(f"--only: unknown {', '.join(sorted(unknown))}")
    return args


@dataclass(frozen=True, slots=True)
class Run:
    """What every step of one benchmark run shares."""

    args: argparse.Namespace
    spec: LoadSpec
    scratch: Path
    redis_pid: int | None


def _measure(run: Run, server: ServerProcess, probe: Probe) -> Measurement:
    """Check one answer, warm up, then measure: load, CPU, and what gatekey did meanwhile."""
    args, url, label = run.args, server.url + PATH, report.LABELS[probe.name]
    contenders.check_one(url, probe)
    headers = {"X-API-Key": probe.key}
    with console.status(f"[bold]{label}[/]: warming up {args.warmup:.0f} s"):
        run_wrk(url, headers, run.spec, args.warmup)
    is_gatekey = probe.name in (GATEKEY, MALFORMED)
    before = observe.read(server.url) if is_gatekey else None
    with (
        console.status(f"[bold]{label}[/]: measuring {args.duration:.0f} s"),
        cpu.measured(sorted(server.worker_pids()), run.redis_pid) as used,
    ):
        result = run_wrk(url, headers, run.spec, args.duration)
    after = observe.read(server.url) if is_gatekey else None
    try:
        contenders.verify(probe, result)
    except BenchFailed as failure:
        raise BenchFailed(f"{failure}\nthe server's log ends with:\n{server.log_tail(8)}") from None
    activity = None
    if before is not None and after is not None:
        activity = observe.per_thousand(before, after, result.requests)
    measurement = Measurement(result, used[0], activity)
    latency = f"p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms"
    cost = f"{measurement.server_us:.0f} µs server CPU/request"
    console.print(f"  {label}: {result.rps:,.0f} req/s, {latency}, {cost}")
    return measurement


def _profile(run: Run, server: ServerProcess, probe: Probe, out_dir: Path) -> None:
    """One more load of the valid-key probe, sampled by py-spy in every worker."""
    seconds = max(1, round(run.args.duration))
    pids = sorted(server.worker_pids())
    recordings = profile.start_recording(BIN / "py-spy", pids, seconds, out_dir)
    with console.status(f"[bold]gatekey[/]: py-spy on workers {pids} for {seconds} s"):
        run_wrk(server.url + PATH, {"X-API-Key": probe.key}, run.spec, seconds + 1)
        paths = profile.finish_recording(recordings, timeout_s=30)
    profile.render(console, paths)


def _serve_and_measure(
    run: Run, launch: Launch, profile_dir: Path | None
) -> dict[str, Measurement]:
    """Start this contender's server alone, measure each of its probes, stop it by pid."""
    results = {}
    with ExitStack() as stack:
        starting = (
            f"[bold]{launch.name}[/]: starting {run.args.workers} workers, port {launch.port}"
        )
        with console.status(starting):
            server = stack.enter_context(
                serving(
                    launch.command,
                    port=launch.port,
                    env={**os.environ, **launch.env},
                    cwd=run.scratch,
                    log=run.scratch / f"{launch.name}.log",
                    ready=answers(launch.probe_path),
                )
            )
        for probe in launch.probes:
            results[probe.name] = _measure(run, server, probe)
        if launch.name == "gatekey" and profile_dir is not None:
            _profile(run, server, launch.probes[0], profile_dir)
        with console.status(f"[bold]{launch.name}[/]: stopping"):
            stack.close()
    return results


def _prepare_gatekey(args: argparse.Namespace, scratch: Path) -> tuple[str, dict[str, str]]:
    """A dropped and re-migrated database, a key with an unreachable limit, and serve's env."""
    database = BenchDatabase(args.database_url)
    metrics_dir = scratch / "metrics"
    metrics_dir.mkdir()
    env = {
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "RATE_LIMIT_BACKEND": "redis",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    with console.status(f"[bold]gatekey[/]: migrating a fresh {database.name}, creating a key"):
        asyncio.run(database.drop())
        key = gatekey_setup.prepare({**os.environ, **env}, scratch)
    return key, env


def _rounds(run: Run) -> dict[str, Measurement]:
    """Every round measures every contender; each keeps its round of median requests/s."""
    args = run.args
    measured: dict[str, list[Measurement]] = {}
    wanted = args.only.split(",")
    # Every contender gets the same header, so request sizes match.
    key, gatekey_env = (
        _prepare_gatekey(args, run.scratch) if "gatekey" in wanted else (generate_key("gk"), {})
    )
    try:
        for number in range(1, args.rounds + 1):
            if args.rounds > 1:
                console.rule(f"round {number} of {args.rounds}")
            profile_dir = args.profile if number == args.rounds else None
            for launch in contenders.launches(
                wanted, workers=args.workers, redis_url=args.redis_url, key=key,
                gatekey_env=gatekey_env,
            ):  # fmt: skip
                for name, measurement in _serve_and_measure(run, launch, profile_dir).items():
                    measured.setdefault(name, []).append(measurement)
    finally:
        if "gatekey" in wanted:
            asyncio.run(BenchDatabase(args.database_url).drop())
    return {name: _median(measurements) for name, measurements in measured.items()}


def _median(measurements: list[Measurement]) -> Measurement:
    ordered = sorted(measurements, key=lambda measurement: measurement.load.rps)
    return ordered[len(ordered) // 2]


def _redis_pid(url: str) -> int | None:
    """Redis's pid when it runs here (its CPU is part of each request's cost); raises if down."""
    with redis.Redis.from_url(url, socket_connect_timeout=2) as client:
        reported = int(client.info("server")["process_id"])
        host = client.connection_pool.connection_kwargs.get("host", "")
    return cpu.local_redis_pid(str(host), reported)


def _caption(args: argparse.Namespace) -> str:
    rounds = f"median of {args.rounds} rounds; " if args.rounds > 1 else ""
    return (
        f"{rounds}{args.duration:.0f} s each after {args.warmup:.0f} s warm-up; "
        f"{args.connections} connections, {args.threads} wrk thread(s); "
        f"{args.workers} uvicorn workers each; {os.cpu_count()} CPUs"
    )


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    if wrk_path() is None:
        sys.stderr.write(WRK_MISSING + "\n")
        return 2
    try:
        redis_pid = _redis_pid(args.redis_url)
    except redis.RedisError as exc:
        console.print(f"[red]error:[/] Redis at {args.redis_url} does not answer: {exc}")
        return 1
    started_at = datetime.now(UTC)
    spec = LoadSpec(connections=args.connections, threads=args.threads)
    with tempfile.TemporaryDirectory(prefix="gatekey-bench-") as scratch:
        try:
            results = _rounds(Run(args, spec, Path(scratch), redis_pid))
        except (BenchFailed, RuntimeError) as exc:  # a ProcessFailed is a RuntimeError
            console.print(f"[bold red]benchmark failed:[/] {exc}")
            return 1
    report.render(console, results, _caption(args))
    settings = {k: v for k, v in vars(args).items() if k not in ("json", "profile")}
    run_info = {"started_at": started_at.isoformat(), "cpu_count": os.cpu_count(), **settings}
    report.write_json(args.json, results, run_info)
    console.print(f"JSON: {args.json}")
    valid = results.get(GATEKEY)
    if valid is not None and valid.activity is not None and valid.activity.fallbacks:
        console.print(
            "[bold red]gatekey decided requests without Redis (RATE_LIMIT_ON_REDIS_ERROR "
            "fallback): these figures are not those of the exact limiter[/]"
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
