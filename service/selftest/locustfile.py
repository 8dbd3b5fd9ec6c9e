"""Locust users for the load steps; `tests/load/locustfile.py` re-exports them for plain `locust`.

Only ever imported by a Locust process (importing locust monkey-patches the process with gevent).
The key comes from `GATEKEY_KEY`; give it a limit it never reaches, e.g. `1000000/minute`.
"""

from __future__ import annotations

import os

from locust import FastHttpUser, constant, task

# Well-formed keys that exist nowhere: each one misses every worker's verification cache, so the
# load exercises the database path, not only cached hits.
from service.keys.format import generate_key


class GatekeyUser(FastHttpUser):
    """A client with no think time mixing cached, uncached and database-reading endpoints."""

    wait_time = constant(0)

    def on_start(self) -> None:
        self.key = os.environ.get("GATEKEY_KEY", "")
        if not self.key:
            raise RuntimeError("set GATEKEY_KEY to a key made with `gatekey keys create`")
        self.prefix = self.key.rsplit("_", 1)[0]
        self.headers = {"X-API-Key": self.key}

    @task(5)
    def whoami(self) -> None:
        self.client.get("/v1/whoami", headers=self.headers)

    @task(2)
    def verify_known(self) -> None:
        self._verify(self.key, "VALID", "/v1/keys/verify")

    @task(2)
    def verify_unknown(self) -> None:
        self._verify(generate_key(self.prefix), "NOT_FOUND", "/v1/keys/verify (unknown key)")

    @task(1)
    def usage(self) -> None:
        self.client.get("/v1/usage", headers=self.headers)

    def _verify(self, key: str, expected_code: str, name: str) -> None:
        with self.client.post(
            "/v1/keys/verify", json={"key": key}, name=name, catch_response=True
        ) as response:
            code = response.json().get("code") if response.status_code == 200 else None
            if code != expected_code:
                response.failure(f"expected {expected_code}, got {response.status_code} {code}")
