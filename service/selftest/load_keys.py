"""The load steps' keys: many, minted in bulk through the CLI as an admin would, so the verdict
reflects a deployment with many customers (each request a different key, as at scale)."""

from __future__ import annotations

from pathlib import Path

from service.selftest.context import UNLIMITED
from service.selftest.gatekey_cli import GatekeyCli

# At the few thousand requests a second of a step, each key comes back about once a second: the
# load spreads over many keys' cache entries, limiter state and usage counters, as a real one does.
LOAD_KEYS = 1000


async def mint_load_keys(cli: GatekeyCli, count: int, workdir: Path, *, name: str) -> Path:
    """`count` keys called `name`, made in one CLI run, written one a line for Locust."""
    keys = await cli.create_keys(name, rate_limit=UNLIMITED, count=count)
    path = workdir / "load-keys.txt"
    path.write_text("".join(f"{created.key}\n" for created in keys))
    return path
