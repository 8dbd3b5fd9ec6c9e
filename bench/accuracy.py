"""The accuracy contender: one key with a small limit, hammered over every worker; the workers
must admit exactly the limit, as counted by their own key-check metrics."""

from __future__ import annotations

from dataclasses import dataclass

from bench import observe
from bench.contenders import PATH
from bench.wrk import KeyWalk, LoadSpec, WrkResult, run_wrk

LIMIT = 1000
# A GCRA burst of 1,000 at once, then one per 86.4 s: no new unit can come due while the load
# runs (with `/hour`, one per 3.6 s, a load stretched past 3.6 s on a busy host admits 1,001,
# which is right, not a miscount).
RATE_LIMIT = f"{LIMIT}/day"
# Long enough to exceed the limit many times over on any machine the bench runs on.
LOAD_S = 3.0


@dataclass(frozen=True, slots=True)
class Accuracy:
    limit: int
    admitted: int  # VALID results, summed over the workers
    refused: int  # RATE_LIMITED results
    other: int  # any other result, e.g. RATE_LIMITER_UNAVAILABLE
    fallbacks: int  # decisions made without Redis: not exact across workers
    load: WrkResult

    @property
    def is_exact(self) -> bool:
        """Exactly the limit admitted, the limit really reached, nothing else went wrong."""
        clean = not (self.other or self.fallbacks or self.load.socket_errors or self.load.timeouts)
        return clean and self.admitted == self.limit and self.refused > 0


def measure(base_url: str, walk: KeyWalk, spec: LoadSpec) -> Accuracy:
    """No warm-up: the first requests are the ones that count. Results are read from `/metrics`
    because wrk does not count requests still in flight when it stops."""
    before = observe.read(base_url)
    load = run_wrk(base_url + PATH, walk, spec, LOAD_S)
    after = observe.read(base_url)
    if before is None or after is None:
        raise RuntimeError("gatekey's /metrics does not answer: the accuracy cannot be counted")
    grown = after.since(before)
    admitted = round(grown.get(observe.VERIFICATIONS, "VALID"))
    refused = round(grown.get(observe.VERIFICATIONS, "RATE_LIMITED"))
    other = round(grown.total(observe.VERIFICATIONS)) - admitted - refused
    fallbacks = round(grown.get(observe.DECISIONS, "fallback"))
    return Accuracy(LIMIT, admitted, refused, other, fallbacks, load)
