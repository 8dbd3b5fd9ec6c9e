"""What every check of a run shares: settings, the deployment, the CLI, SQL and its test keys."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field

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
}


@dataclass
class Context:
    settings: Settings
    deployment: Deployment
    cli: GatekeyCli
    probe: DatabaseProbe
    workers: int
    expected_workers: int | None = None
    run_id: str = field(default_factory=lambda: secrets.token_hex(3))
    _keys: dict[str, asyncio.Task[CreatedKey]] = field(default_factory=dict)

    def prefetch(self, purposes: set[str]) -> None:
        """Start creating keys through the CLI at once; each CLI start costs about a second."""
        for purpose in sorted(purposes):
            if purpose not in self._keys:
                self._keys[purpose] = asyncio.ensure_future(
                    self.cli.create_key(
                        f"selftest-{self.run_id}-{purpose}", rate_limit=KEY_LIMITS[purpose]
                    )
                )

    async def key(self, purpose: str) -> CreatedKey:
        self.prefetch({purpose})
        return await self._keys[purpose]

    async def aclose(self) -> None:
        for task in self._keys.values():
            task.cancel()
        await asyncio.gather(*self._keys.values(), return_exceptions=True)
