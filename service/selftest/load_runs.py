"""The load steps: Locust against the deployment while it is sampled, then the checks they feed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from service.selftest import load_checks
from service.selftest.context import Context
from service.selftest.load import run_locust
from service.selftest.load_checks import LoadRun, StepLimits
from service.selftest.load_keys import LOAD_KEYS
from service.selftest.model import CheckResult, LoadStep, MemorySample
from service.selftest.sampling import Sampler
from service.selftest.verdict import compare_with_baseline

LOAD_CHECKS = (
    "pool-returns-to-zero",
    "worker-resources",
    "db-connections",
    "pool-exhaustion",
    "error-rate",
    "memory-leak",
    "load-steps",
)
# After a step, in-flight requests and a usage flush may still hold a connection this long.
SETTLE_S = 3.0


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """Users per step; each step lasts `duration_s`, or ends after `stop_after` requests, except
    the last: the memory check fits its slope over that step, which needs the whole duration.
    Every request takes the next of `keys` keys."""

    users: tuple[int, ...]
    duration_s: float
    stop_after: int | None = None
    keys: int = LOAD_KEYS
    limits: StepLimits = field(default_factory=StepLimits)


async def run_load_steps(
    ctx: Context,
    plan: LoadPlan,
    keys_file: Path,
    *,
    started: float,
    progress: Callable[[str], None],
) -> list[LoadRun]:
    """Each step over the keys in `keys_file` (`mint_load_keys`), its report in that folder."""
    workdir = keys_file.parent
    sampler = Sampler(ctx.deployment.scrape, ctx.probe.activity, started_at=started)
    runs = []
    for index, users in enumerate(plan.users):
        stop_after = plan.stop_after if index < len(plan.users) - 1 else None
        progress(f"load: {users} users over {plan.keys:,} keys for {plan.duration_s:g} s")
        before = await sampler.sample()
        done = asyncio.Event()
        sampling = asyncio.create_task(sampler.sample_until(done))
        try:
            stats = await run_locust(
                url=ctx.deployment.url, keys_file=keys_file, users=users,
                duration_s=plan.duration_s, stop_after=stop_after, workdir=workdir,
            )  # fmt: skip
        finally:
            done.set()
            samples = await sampling
        duration_s = time.monotonic() - started - before.t_s
        after = await sampler.settle(SETTLE_S)
        runs.append(LoadRun(users, duration_s, stats, before, samples, after))
    return runs


def memory_samples(runs: list[LoadRun]) -> list[MemorySample]:
    return [
        MemorySample(round(sample.t_s, 2), pid, round(rss / load_checks.MB, 1))
        for run in runs
        for sample in (*run.during, run.after)
        for pid, rss in sample.rss_bytes.items()
    ]


def judge_load(
    ctx: Context,
    runs: list[LoadRun],
    chosen: frozenset[str],
    plan: LoadPlan,
    baseline: tuple[LoadStep, ...],
) -> tuple[list[CheckResult], list[LoadStep]]:
    """The chosen load-fed checks, in checklist order, and the steps for the report."""
    steps = [load_checks.load_step(run, plan.limits) for run in runs]
    per_worker = ctx.settings.database_pool_size + ctx.settings.database_pool_max_overflow
    judges: dict[str, Callable[[], list[CheckResult]]] = {
        "pool-returns-to-zero": lambda: [load_checks.pool_returns_to_zero(runs)],
        "worker-resources": lambda: [
            load_checks.worker_resources(runs, steps, expected_workers=ctx.expected_workers)
        ],
        "db-connections": lambda: [
            load_checks.db_connections(
                runs, per_worker=per_worker, expected_workers=ctx.expected_workers
            )
        ],
        "pool-exhaustion": lambda: [load_checks.pool_exhaustion(runs)],
        "error-rate": lambda: [load_checks.error_rate(runs)],
        "memory-leak": lambda: [load_checks.memory_leak(runs[-1])],
        "load-steps": lambda: [load_checks.step_check(step) for step in steps],
    }
    results = [result for name in LOAD_CHECKS if name in chosen for result in judges[name]()]
    if baseline:
        results.append(compare_with_baseline(steps, list(baseline)))
    return results, steps
