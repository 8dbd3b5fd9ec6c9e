"""`gatekey db ...`: create-if-missing and migrate, downgrade, show and check the schema."""

from __future__ import annotations

import typer

from cli.common import console, fail, run_async, settings_of
from service.db import migrations

app = typer.Typer(help="Database schema: upgrade, downgrade, current, check.", no_args_is_help=True)


@app.command()
def upgrade(ctx: typer.Context, revision: str = typer.Argument("head")) -> None:
    """Create the database if it is missing, then migrate to REVISION (default head)."""
    migrations.upgrade(settings_of(ctx), revision)
    console.print(f"database at {revision}")


@app.command()
def downgrade(ctx: typer.Context, revision: str) -> None:
    """Migrate down to REVISION (`base` empties the schema)."""
    migrations.downgrade(settings_of(ctx), revision)
    console.print(f"database at {revision}")


@app.command()
def current(ctx: typer.Context) -> None:
    """Print the database's revision and the code's head."""
    settings = settings_of(ctx)
    revision = run_async(lambda: migrations.current_revision(settings))
    console.print(f"current: {revision or 'base'}  head: {migrations.head_revision(settings)}")


@app.command()
def check(ctx: typer.Context) -> None:
    """Exit non-zero when the database is not at head or the models and migrations differ."""
    problems = migrations.check(settings_of(ctx))
    if problems:
        fail("; ".join(problems))
    console.print("schema at head, no drift")
