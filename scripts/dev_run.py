"""What `make run` runs inside devservices: migrate, issue a demo admin key, then serve.

HOST and PORT (default 127.0.0.1 and 8000) choose where `gatekey serve` listens.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from service.harness.gatekey import gatekey_executable

# The console script installed beside this interpreter, so `make run` needs no activated venv.
GATEKEY = gatekey_executable()


def gatekey(*args: str, capture: bool = False) -> str:
    """Run one `gatekey` command; its errors (one line each) go straight to the terminal."""
    stdout = subprocess.PIPE if capture else None
    return subprocess.run([GATEKEY, *args], check=True, stdout=stdout, text=True).stdout or ""


def main() -> int:
    host = os.environ.get("HOST", "127.0.0.1")
    port = os.environ.get("PORT", "8000")
    try:
        gatekey("db", "upgrade")
        created = gatekey(
            "keys", "create", "--name", "demo", "--scopes", "admin", "--json", capture=True
        )
        issued = json.loads(created)
    except subprocess.CalledProcessError as exc:
        return exc.returncode  # gatekey has already said why, in one line
    except KeyboardInterrupt:
        return 130
    # A wildcard bind is reached through loopback.
    reachable = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    sys.stdout.write(
        f"demo admin key {issued['id']} (shown once; each `make run` issues a new one):\n"
        f"  curl -H 'X-API-Key: {issued['key']}' http://{reachable}:{port}/v1/whoami\n"
    )
    sys.stdout.flush()
    # Replace this process, so signals reach the server directly and nothing is left behind.
    os.execv(GATEKEY, [GATEKEY, "serve", "--host", host, "--port", port])  # noqa: S606


if __name__ == "__main__":
    sys.exit(main())
