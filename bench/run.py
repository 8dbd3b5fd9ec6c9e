"""`make bench`: each contender served alone by uvicorn workers, then every scenario measured on
it; gatekey judged against issue 12's goals, with the same keys sent to every contender."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import redis
from rich.console import Console
from sqlalchemy import make_url

from bench import accuracy, contenders, cpu, gatekey_setup, measure, report, scenarios
from bench.accuracy import Accuracy
from bench.contenders import ROOT, SERVERS, BenchFailed, Launch, Probe
from bench.gatekey_setup import UNREACHED_LIMIT, BenchDatabase
from bench.measure import Loads
from bench.report import GATEKEY, Measurement
from bench.scenarios import Scenario
from bench.targets import judge
from bench.wrk import WRK_MISSING, KeyWalk, LoadSpec, wrk_path
from service.config import DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL
from service.harness.processes import ServerProcess, answers, serving
from service.keys.format import generate_key

# Wide enough for the table when the output is piped (make, CI logs).
console = Console(width=None if sys.stdout.isatty() else 160)


def _bench_database_url(url: str) -> str:
    """The same server as `url`, in a database of the benchmark's own."""
    server, _, database = url.rpartition("/")
    query = database.partition("?")[2]
    return f"{server}/gatekey_bench" + (f"?{query}" if query else "")


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of key counts: {text!r}") from None
    if any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError("every key count must be at least 1")
    return sizes


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--keys", type=_sizes, default=[1, 50, 5000],
        help="rotation sizes, comma list (default 1,50,5000; 1 adds the malformed-key point)",
    )  # fmt: skip
    parser.add_argument(
        "--cold", type=int, default=100_000,
        help="keys of the cold scenario, each request a different one (0: none)",
    )  # fmt: skip
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds a point")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds first")
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (1: see README)")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument(
        "--rounds", type=int, default=1, help="repeat everything; keep each point's median"
    )
    parser.add_argument("--only", default=",".join(SERVERS), help="comma list of contenders")
    parser.add_argument("--json", type=Path, default=ROOT / "reports" / "bench.json")
    server_url = os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
    parser.add_argument(
        "--database-url",
        default=_bench_database_url(server_url),
        help="dropped and re-created for the run (default: DATABASE_URL's server, gatekey_bench)",
    )
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", DEFAULT_REDIS_URL))
    parser.add_argument(
        "--profile", type=Path, help="then py-spy gatekey's workers into this folder, under the "
        "largest rotation (the cold scenario when there is none)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if min(args.rounds, args.workers, args.connections, args.threads) < 1:
        parser.error("--rounds, --workers, --connections and --threads must be at least 1")
    if args.cold < 0 or (not args.keys and not args.cold):
        parser.error("nothing to measure: give --keys, or --cold above 0")
    unknown = set(args.only.split(",")) - set(SERVERS)
    if unknown:
        parser.error(f"--only: unknown {', '.join(sorted(unknown))}; known: {', '.join(SERVERS)}")
    return args


@dataclass(frozen=True, slots=True)
class Plan:
    """What every contender is given: the scenarios, and gatekey's two extra points."""

    scenarios: list[Scenario]
    malformed: Probe
    full_limits: Probe | None  # gatekey's key with every kind of limit
    accuracy: KeyWalk | None
    gatekey_env: dict[str, str]
    minted: Mapping[str, object]  # how the keys were made, for the report


def _gatekey_keys(args: argparse.Namespace, scratch: Path, count: int) -> Plan:
    """A dropped and re-migrated database, `count` keys minted in bulk by the CLI, serve's env."""
    database = BenchDatabase(args.database_url)
    metrics_dir = scratch / "metrics"
    metrics_dir.mkdir()
    env = {
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "RATE_LIMIT_BACKEND": "redis",
        # Its own namespace, removed after the run: 100,000 keys leave limiter, usage and
        # directory entries that would otherwise outlive the run in a shared Redis.
        "REDIS_NAMESPACE": BENCH_NAMESPACE,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    cli_env = {**os.environ, **env}
    with console.status(
        f"[bold]gatekey[/]: migrating a fresh {database.name}, minting {count:,} keys"
    ):
        asyncio.run(database.drop())
        keys = [gatekey_setup.prepare(cli_env, scratch)]
        started = time.monotonic()
        if count > 1:
            keys += gatekey_setup.mint(cli_env, scratch, count - 1, UNREACHED_LIMIT)
        mint_s = time.monotonic() - started
        exact = gatekey_setup.mint(cli_env, scratch, 1, accuracy.RATE_LIMIT)
        full = gatekey_setup.full_limits_key(cli_env, scratch)
    console.print(f"minted {count - 1:,} keys in {mint_s:.1f} s (`gatekey keys create --count`)")
    return Plan(
        scenarios.build(keys, args.keys, args.cold, scratch),
        contenders.malformed_probe(keys[0], scratch),
        contenders.full_limits_probe(full, scratch),
        scenarios.write_walk(exact, scratch / "accuracy.txt"),
        env,
        {"minted_keys": count, "bulk_mint_s": round(mint_s, 2)},
    )


def _plan(args: argparse.Namespace, scratch: Path) -> Plan:
    count = max(1, scenarios.keys_needed(args.keys, args.cold))
    if GATEKEY in args.only.split(","):
        return _gatekey_keys(args, scratch, count)
    # Without gatekey, keys of the same shape, so request sizes match.
    keys = [generate_key("gk") for _ in range(count)]
    built = scenarios.build(keys, args.keys, args.cold, scratch)
    return Plan(
        built,
        contenders.malformed_probe(keys[0], scratch),
        None,
        None,
        {},
        {"generated_keys": count},
    )


@dataclass(frozen=True, slots=True)
class Run:
    """What every step of one benchmark run shares."""

    args: argparse.Namespace
    loads: Loads
    scratch: Path
    plan: Plan


def _gatekey_extras(run: Run, server: ServerProcess) -> Accuracy | None:
    """The accuracy contender, then py-spy under the largest rotation when asked."""
    exact = None
    if run.plan.accuracy is not None:
        exact = accuracy.measure(server.url, run.plan.accuracy, run.loads.spec)
        console.print(f"  accuracy: {exact.admitted:,} admitted, the limit is {exact.limit:,}")
    if run.args.profile is not None:
        chosen = max(run.plan.scenarios, key=lambda s: (s.kind == scenarios.ROTATE, s.size))
        measure.profiled(console, run.loads, server, chosen.walk, run.args.profile)
    return exact


def _serve(run: Run, launch: Launch, *, is_last: bool) -> tuple[list[Measurement], Accuracy | None]:
    """Start this contender's server alone, measure every scenario on it, stop it by pid."""
    found, exact = [], None
    starting = f"[bold]{launch.name}[/]: starting {run.args.workers} workers, port {launch.port}"
    with ExitStack() as stack:
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
        for scenario in run.plan.scenarios:
            plan = run.plan
            for probe in contenders.probes(launch, scenario, plan.malformed, plan.full_limits):
                found.append(measure.point(console, run.loads, server, scenario, probe))
        if launch.name == GATEKEY and is_last:
            exact = _gatekey_extras(run, server)
        with console.status(f"[bold]{launch.name}[/]: stopping"):
            stack.close()
    return found, exact


def _rounds(run: Run) -> tuple[list[Measurement], Accuracy | None]:
    """Every round measures every contender; each point keeps its round of median req/s."""
    args = run.args
    measured: dict[tuple[Scenario, str], list[Measurement]] = {}
    exact = None
    for number in range(1, args.rounds + 1):
        if args.rounds > 1:
            console.rule(f"round {number} of {args.rounds}")
        launches = contenders.launches(
            args.only.split(","), workers=args.workers, redis_url=args.redis_url,
            gatekey_env=run.plan.gatekey_env,
        )  # fmt: skip
        for launch in launches:
            found, accuracy_found = _serve(run, launch, is_last=number == args.rounds)
            exact = accuracy_found or exact
            for point in found:
                measured.setdefault((point.scenario, point.contender), []).append(point)
    # Table order: scenario by scenario, contenders in launch order.
    order = {scenario: index for index, scenario in enumerate(run.plan.scenarios)}
    points = sorted(measured.items(), key=lambda item: order[item[0][0]])
    return [_median(found) for _, found in points], exact


def _median(measurements: list[Measurement]) -> Measurement:
    ordered = sorted(measurements, key=lambda measurement: measurement.load.rps)
    return ordered[len(ordered) // 2]


def _shared_groups(args: argparse.Namespace) -> dict[str, cpu.ProcessFinder]:
    """Redis and PostgreSQL when they run here (their CPU is part of each request's cost);
    raises `redis.RedisError` when Redis does not answer."""
    groups = {}
    with redis.Redis.from_url(args.redis_url, socket_connect_timeout=2) as client:
        reported = int(client.info("server")["process_id"])
        host = client.connection_pool.connection_kwargs.get("host", "")
    redis_group = cpu.redis_finder(str(host), reported)
    if redis_group is not None:
        groups[cpu.REDIS] = redis_group
    database = BenchDatabase(args.database_url)
    try:
        host = make_url(args.database_url).host or ""
        postgres = cpu.postgres_finder(host, database.admin_dsn, database.name)
    except (OSError, asyncpg.PostgresError) as exc:
        console.print(f"[yellow]PostgreSQL CPU not measured: {exc}[/]")
        postgres = None
    if postgres is not None:
        groups[cpu.POSTGRES] = postgres
    return groups


def _caption(args: argparse.Namespace) -> str:
    rounds = f"median of {args.rounds} rounds; " if args.rounds > 1 else ""
    return (
        f"{rounds}{args.duration:g} s a point after {args.warmup:g} s warm-up; "
        f"{args.connections} connections, {args.threads} wrk thread(s); "
        f"{args.workers} uvicorn workers each; {os.cpu_count()} CPUs; "
        "×FastAPI, ×ASGI: req/s over the bare contender's in the same scenario; "
        "µs: CPU per request"
    )


BENCH_NAMESPACE = "gkbench"


def _forget_namespace(redis_url: str) -> None:
    with redis.Redis.from_url(redis_url) as client:
        names = list(client.scan_iter(f"{BENCH_NAMESPACE}:*", count=10_000))
        for start in range(0, len(names), 10_000):
            client.delete(*names[start : start + 10_000])


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    if wrk_path() is None:
        sys.stderr.write(WRK_MISSING + "\n")
        return 2
    try:
        shared = _shared_groups(args)
    except redis.RedisError as exc:
        console.print(f"[red]error:[/] Redis at {args.redis_url} does not answer: {exc}")
        return 1
    started_at = datetime.now(UTC)
    loads = Loads(LoadSpec(args.connections, args.threads), args.warmup, args.duration, shared)
    with tempfile.TemporaryDirectory(prefix="gatekey-bench-") as scratch:
        try:
            plan = _plan(args, Path(scratch))
            results, exact = _rounds(Run(args, loads, Path(scratch), plan))
        except (BenchFailed, RuntimeError) as exc:  # a ProcessFailed is a RuntimeError
            console.print(f"[bold red]benchmark failed:[/] {exc}")
            return 1
        finally:
            if GATEKEY in args.only.split(","):
                asyncio.run(BenchDatabase(args.database_url).drop())
                _forget_namespace(args.redis_url)
    checks = judge(results, exact)
    report.render(console, results, checks, _caption(args))
    settings = {k: v for k, v in vars(args).items() if k not in ("json", "profile")}
    run_info = {
        "started_at": started_at.isoformat(), "cpu_count": os.cpu_count(), **settings,
        **plan.minted,
    }  # fmt: skip
    report.write_json(args.json, results, checks, exact, run_info)
    console.print(f"JSON: {args.json}")
    is_clean = all(check.passed for check in checks) and not any(m.failures for m in results)
    return 0 if is_clean else 1


if __name__ == "__main__":
    raise SystemExit(main())
