"""Locust users for the load steps; `tests/load/locustfile.py` re-exports them for plain `locust`.

Only ever imported by a Locust process (importing locust monkey-patches the process with gevent).
The keys come from `GATEKEY_KEYS_FILE`, one a line (`gatekey keys create --count 1000 --json | jq
-r .key`), or the one `GATEKEY_KEY`; give them a limit they never reach, e.g. `1000000/minute`.
Every request takes the next key, round-robin over all users, as a deployment's customers do.
`GATEKEY_STOP_AFTER=N` ends the run once N requests were made after every user started.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import gevent
from locust import FastHttpUser, constant, events, task
from locust.env import Environment

# Well-formed keys that exist nowhere: each one misses every worker's verification cache, so the
# load exercises the database path, not only cached hits.
from service.keys.format import generate_key
from service.results import KeyCheckResult

STOP_AFTER_ENV = "GATEKEY_STOP_AFTER"
KEYS_FILE_ENV = "GATEKEY_KEYS_FILE"


def load_keys() -> list[str]:
    """The keys to rotate over, from the environment Locust was started with."""
    path = os.environ.get(KEYS_FILE_ENV)
    keys = Path(path).read_text().split() if path else [os.environ.get("GATEKEY_KEY", "")]
    if not keys or not all(keys):
        raise RuntimeError(
            f"set {KEYS_FILE_ENV} to a file of keys, or GATEKEY_KEY to a key made with "
            "`gatekey keys create`"
        )
    return keys


@events.init.add_listener  # type: ignore[untyped-decorator]  # locust's events are untyped
def stop_after_requests(environment: Environment, **_: Any) -> None:
    """The self-test's --quick steps: enough requests to judge, and not a second longer."""
    limit = int(os.environ.get(STOP_AFTER_ENV) or 0)
    if not limit:
        return
    counted = -1  # not counting until every user runs (the statistics are reset then too)

    def start(**_: Any) -> None:
        nonlocal counted
        counted = 0

    def count(**_: Any) -> None:
        nonlocal counted
        if counted < 0:
            return
        counted += 1
        if counted == limit and environment.runner is not None:
            # Not from this greenlet: quitting kills every user, the one counting included.
            gevent.spawn(environment.runner.quit)

    environment.events.spawning_complete.add_listener(start)  # type: ignore[no-untyped-call]
    environment.events.request.add_listener(count)  # type: ignore[no-untyped-call]


class GatekeyUser(FastHttpUser):
    """A client with no think time mixing cached, uncached and database-reading endpoints."""

    wait_time = constant(0)
    # One rotation shared by every user of the process (gevent: one thread, no lock needed).
    keys: ClassVar[Iterator[str] | None] = None

    def on_start(self) -> None:
        self.prefix = self._next_key().rsplit("_", 1)[0]

    def _next_key(self) -> str:
        if GatekeyUser.keys is None:
            GatekeyUser.keys = itertools.cycle(load_keys())
        return next(GatekeyUser.keys)

    @task(5)
    def whoami(self) -> None:
        self.client.get("/v1/whoami", headers={"X-API-Key": self._next_key()})

    @task(2)
    def verify_known(self) -> None:
        self._verify(self._next_key(), KeyCheckResult.VALID, "/v1/keys/verify")

    @task(2)
    def verify_unknown(self) -> None:
        self._verify(
            generate_key(self.prefix), KeyCheckResult.NOT_FOUND, "/v1/keys/verify (unknown key)"
        )

    @task(1)
    def usage(self) -> None:
        self.client.get("/v1/usage", headers={"X-API-Key": self._next_key()})

    def _verify(self, key: str, expected_code: KeyCheckResult, name: str) -> None:
        with self.client.post(
            "/v1/keys/verify", json={"key": key}, name=name, catch_response=True
        ) as response:
            code = response.json().get("code") if response.status_code == 200 else None
            if code != expected_code:
                response.failure(f"expected {expected_code}, got {response.status_code} {code}")
