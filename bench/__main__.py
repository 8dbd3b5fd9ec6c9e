"""`python -m bench` (what `make bench` runs): the same as `scripts/bench.py`."""

from bench.run import main

raise SystemExit(main())
