"""What every check of a run shares: settings, the deployment, the CLI, SQL and its test keys."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass

from sqlalchemy import exc as sa_exc

from service.config import Settings
from service.selftest.dbprobe import DatabaseProbe
from service.selftest.gatekey_cli import CreatedKey, GatekeyCli
from service.selftest.target import Deployment

# A limit load never reaches: 1,000,000 a minute is far above what two cores can serve.
UNLIMITED = "1000000/minute"
EXACT_LIMIT = 40
KEY_LIMITS = {
    "load": UNLIMITED,
    "revoke": UNLIMITED,
    "exact": f"{EXACT_LIMIT}/hour",
    "limiter": "3/minute",
    "usage": UNLIMITED,
    "feed": UNLIMITED,
}


class KeyShelf:
    """Test keys made through the CLI, started early, one CLI run per rate limit (each run costs
    a second or more). Every key of the run is named `name_prefix`…, revoked when it closes."""

    def __init__(self, cli: GatekeyCli) -> None:
        self._cli = cli
        self.name_prefix = f"selftest-{secrets.token_hex(3)}-"
        # purpose -> (the CLI run making its keys, its place among them)
        self._keys: dict[str, tuple[asyncio.Task[list[CreatedKey]], int]] = {}
        self._has_named = False

    def name_for(self, purpose: str) -> str:
        """The name of the run's key(s) for `purpose`; from now on the run has keys to revoke."""
        self._has_named = True
        return f"{self.name_prefix}{purpose}"

    def prefetch(self, purposes: set[str]) -> None:
        by_limit: dict[str, list[str]] = {}
        for purpose in sorted(purposes - set(self._keys)):
            by_limit.setdefault(KEY_LIMITS[purpose], []).append(purpose)
        for limit, group in by_limit.items():
            making = asyncio.ensure_future(
                self._cli.create_keys(
                    self.name_for("+".join(group)), rate_limit=limit, count=len(group)
                )
            )
            self._keys |= {purpose: (making, index) for index, purpose in enumerate(group)}

    async def get(self, purpose: str) -> CreatedKey:
        self.prefetch({purpose})
        making, index = self._keys[purpose]
        return (await making)[index]

    async def aclose(self) -> None:
        """Stop keys still being made, then revoke every key of the run (the load's too), in
        one statement: also when the run was interrupted."""
        making = {task for task, _ in self._keys.values()}
        for task in making:
            task.cancel()
        await asyncio.gather(*making, return_exceptions=True)
        if not self._has_named:
            return
        # A database out of reach keeps them only until their one-hour expiry.
        with contextlib.suppress(sa_exc.SQLAlchemyError, OSError):
            async with DatabaseProbe.connect(self._cli.settings) as probe:
                await probe.revoke_run_keys(self.name_prefix)


@dataclass(frozen=True, slots=True)
class Context:
    deployment: Deployment
    cli: GatekeyCli
    probe: DatabaseProbe
    keys: KeyShelf
    expected_workers: int | None = None

    @property
    def settings(self) -> Settings:
        """The deployment's settings, as the operator's environment gives them to the CLI."""
        return self.cli.settings

    async def key(self, purpose: str) -> CreatedKey:
        return await self.keys.get(purpose)
