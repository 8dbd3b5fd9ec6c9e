"""What gatekey did during a measurement, from its own `/metrics`: cache misses, fallbacks and
key-check results.

"Warm cache" and "exact" are claims the figures rest on: a miss is a PostgreSQL lookup, a
fallback a decision made without Redis (not exact across workers).
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

CACHE_REQUESTS = ("gatekey_key_cache_requests_total", "outcome")
DECISIONS = ("gatekey_ratelimit_decisions_total", "decision")
VERIFICATIONS = ("gatekey_key_verifications_total", "result")


@dataclass(frozen=True, slots=True)
class Counters:
    """(sample name, label value) -> the counter summed over every worker."""

    values: dict[tuple[str, str], float]

    def get(self, sample: tuple[str, str], value: str) -> float:
        return self.values.get((sample[0], value), 0.0)

    def since(self, before: Counters) -> Counters:
        keys = set(self.values) | set(before.values)
        return Counters({k: self.values.get(k, 0.0) - before.values.get(k, 0.0) for k in keys})

    def total(self, sample: tuple[str, str]) -> float:
        return sum(count for (name, _), count in self.values.items() if name == sample[0])


@dataclass(frozen=True, slots=True)
class Activity:
    """Per 1,000 requests, so runs of different lengths compare."""

    cache_misses: float
    fallbacks: float


def read(base_url: str) -> Counters | None:
    """The counters summed over every worker, or None while the deployment has no `/metrics`."""
    answer = httpx.get(base_url + "/metrics", timeout=5.0)
    if answer.status_code != 200:
        return None
    wanted = dict((CACHE_REQUESTS, DECISIONS, VERIFICATIONS))
    values: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            label = wanted.get(sample.name)
            if label is not None and label in sample.labels:
                key = (sample.name, sample.labels[label])
                values[key] = values.get(key, 0.0) + sample.value
    return Counters(values)


def per_thousand(before: Counters, after: Counters, requests: int) -> Activity:
    grown, scale = after.since(before), 1000 / max(requests, 1)
    return Activity(
        grown.get(CACHE_REQUESTS, "miss") * scale, grown.get(DECISIONS, "fallback") * scale
    )
