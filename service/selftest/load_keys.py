"""The load steps' keys: many, minted in bulk through the CLI as an admin would, so the verdict
reflects a deployment with many customers (each request a different key, as at scale)."""

from __future__ import annotations

import json
from pathlib import Path

from service.selftest.context import UNLIMITED
from service.selftest.gatekey_cli import GatekeyCli
from service.selftest.model import SelftestAborted

# At the few thousand requests a second of a step, each key comes back about once a second: the
# load spreads over many keys' cache entries, limiter state and usage counters, as a real one does.
LOAD_KEYS = 1000


async def mint_load_keys(cli: GatekeyCli, count: int, workdir: Path, *, name: str) -> Path:
    """`count` keys from one `gatekey keys create --count`, called `name`, written one a line
    for Locust."""
    # An expiry bounds what a self-test run that never finished leaves in a real database.
    result = await cli.run(
        "keys", "create", "--name", name,
        "--scopes", "selftest", "--rate-limit", UNLIMITED, "--expires-in", "1h",
        "--count", str(count), "--json",
    )  # fmt: skip
    if result.returncode != 0:
        raise SelftestAborted(f"`gatekey keys create --count` failed: {result.last_error_line}")
    path = workdir / "load-keys.txt"
    path.write_text("".join(json.loads(line)["key"] + "\n" for line in result.stdout.splitlines()))
    return path
