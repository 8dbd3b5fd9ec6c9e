"""The `gatekey` CLI as the self-test runs it: as an admin would, with the self-test's settings."""

from __future__ import annotations

import json
from dataclasses import dataclass

from service.config import Settings
from service.harness.gatekey import CliResult, cli_env, run_cli_async
from service.harness.processes import ProcessFailed
from service.selftest.model import SelftestAborted


@dataclass(frozen=True, slots=True)
class CreatedKey:
    id: str
    key: str


class GatekeyCli:
    """Runs `gatekey ...` as an admin would, against the database `settings` names."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def env(self, **overrides: str) -> dict[str, str]:
        return cli_env(self.settings, **overrides)

    async def run(self, *args: str, **env_overrides: str) -> CliResult:
        try:
            return await run_cli_async(*args, env=self.env(**env_overrides))
        except ProcessFailed as exc:  # not installed, or hung
            raise SelftestAborted(str(exc)) from None

    async def create_keys(self, name: str, *, rate_limit: str, count: int) -> list[CreatedKey]:
        """`count` keys called `name` from one `gatekey keys create --count` (one CLI start: each
        costs a second or more, many more on a busy host)."""
        # An expiry bounds what a self-test run that never finished leaves in a real database.
        result = await self.run(
            "keys", "create", "--name", name, "--scopes", "selftest", "--rate-limit", rate_limit,
            "--expires-in", "1h", "--count", str(count), "--json",
        )  # fmt: skip
        if result.returncode != 0:
            raise SelftestAborted(f"`gatekey keys create` failed: {result.last_error_line}")
        rows = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
        return [CreatedKey(id=str(row["id"]), key=str(row["key"])) for row in rows]

    async def revoke_key(self, key_id: str) -> None:
        result = await self.run("keys", "revoke", key_id)
        if result.returncode != 0:
            raise SelftestAborted(f"`gatekey keys revoke` failed: {result.last_error_line}")
