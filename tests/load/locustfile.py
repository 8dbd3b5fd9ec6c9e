"""Load scenario for plain Locust (web UI or headless), the same users `gatekey selftest` runs.

GATEKEY_KEY=gk_... locust -f tests/load/locustfile.py --host http://127.0.0.1:8000
"""

from service.selftest.locustfile import GatekeyUser

__all__ = ["GatekeyUser"]
