"""`gatekey serve`: size the worker pool against PostgreSQL, then run the supervised workers."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from cli.common import fail, run_async, settings_of
from service.config import RateLimitBackend
from service.db import migrations
from service.workers.sizing import plan_workers, read_connection_budget
from service.workers.supervisor import run_workers


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Worker processes (default WEB_CONCURRENCY, else CPUs that fit)."),
    ] = None,
) -> None:
    """Run the HTTP service with N supervised worker processes."""
    settings = settings_of(ctx)
    requested = workers if workers is not None else settings.web_concurrency
    if settings.rate_limit_backend is RateLimitBackend.MEMORY and (requested or 0) > 1:
        fail(
            f"RATE_LIMIT_BACKEND=memory limits one process only; with {requested} workers each "
            "would admit the full limit. Use RATE_LIMIT_BACKEND=redis or --workers 1",
            2,
        )
    budget = run_async(lambda: read_connection_budget(settings))
    # Workers on an unmigrated schema would answer every key check with 503: refuse up front.
    current, head = (
        run_async(lambda: migrations.current_revision(settings)),
        migrations.head_revision(settings),
    )
    if current != head:
        schema = current or "no revision"
        fail(f"the database schema is at {schema}, not at head {head}: run `gatekey db upgrade`")
    count = plan_workers(
        requested=requested if settings.rate_limit_backend is RateLimitBackend.REDIS else 1,
        cpu_count=os.cpu_count() or 1,
        per_worker=settings.database_pool_size + settings.database_pool_max_overflow,
        budget=budget,
    )
    run_workers(settings, host=host, port=port, count=count)
