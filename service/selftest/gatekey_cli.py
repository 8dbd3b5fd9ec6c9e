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

    async def create_key(self, name: str, *, rate_limit: str) -> CreatedKey:
        # An expiry bounds what a self-test run that never finished leaves in a real database.
        result = await self.run(
            "keys",
            "create",
            "--name",
            name,
            "--scopes",
            "selftest",
            "--rate-limit",
            rate_limit,
            "--expires-in",
            "1h",
            "--json",
        )
        if result.returncode != 0:
            raise SelftestAborted(f"`gatekey keys create` failed: {result.last_error_line}")
        data = json.loads(result.stdout)
        return CreatedKey(id=str(data["id"]), key=str(data["key"]))

    async def revoke_key(self, key_id: str) -> None:
        result = await self.run("keys", "revoke", key_id)
        if result.returncode != 0:
            raise SelftestAborted(f"`gatekey keys revoke` failed: {result.last_error_line}")
