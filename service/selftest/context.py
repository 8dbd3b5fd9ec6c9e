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
    """Test keys made through the CLI, started early: each CLI run costs a second or more.
    Every key of the run is named `name_prefix`…, and revoked when the shelf closes."""

    def __init__(self, cli: GatekeyCli) -> None:
        self._cli = cli
        self.name_prefix = f"selftest-{secrets.token_hex(3)}-"
        self._keys: dict[str, asyncio.Task[CreatedKey]] = {}
        self._has_named = False

    def name_for(self, purpose: str) -> str:
        """The name of the run's key(s) for `purpose`; from now on the run has keys to revoke."""
        self._has_named = True
        return f"{self.name_prefix}{purpose}"

    def prefetch(self, purposes: set[str]) -> None:
        for purpose in sorted(purposes - set(self._keys)):
            name = self.name_for(purpose)
            self._keys[purpose] = asyncio.ensure_future(
                self._cli.create_key(name, rate_limit=KEY_LIMITS[purpose])
            )

    async def get(self, purpose: str) -> CreatedKey:
        self.prefetch({purpose})
        return await self._keys[purpose]

    async def aclose(self) -> None:
        """Stop keys still being made, then revoke every key of the run (the load's too), in
        one statement: also when the run was interrupted."""
        for task in self._keys.values():
            task.cancel()
        await asyncio.gather(*self._keys.values(), return_exceptions=True)
        if not self._has_named:
            return
        # A database out of reach keeps them only until their one-hour expiry.
        with contextlib.suppress(sa_exc.SQLAlchemyError, OSError):
            async with DatabaseProbe.connect(self._cli.settings.database_url) as probe:
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
