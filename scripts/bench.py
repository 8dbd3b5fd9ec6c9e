"""`make bench`: gatekey against bare FastAPI, bare ASGI and slowapi + Redis, under wrk.

The harness lives in `bench/` (see `bench/run.py`); this entry point puts the repository root on
the path so `.venv/bin/python scripts/bench.py [--duration 10 ...]` works from anywhere.
"""

import runpy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
runpy.run_module("bench.run", run_name="__main__", alter_sys=True)
