"""What gatekey did during a measurement, from its own `/metrics`: cache misses and fallbacks.

"Warm cache" and "exact" are claims the figures rest on: a miss is a PostgreSQL lookup, a
fallback a decision made without Redis (not exact across workers).
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

# (sample name, label, value) of each counter read.
CACHE_MISSES = ("gatekey_key_cache_requests_total", "outcome", "miss")
FALLBACKS = ("gatekey_ratelimit_decisions_total", "decision", "fallback")


@dataclass(frozen=True, slots=True)
class Counters:
    cache_misses: float
    fallbacks: float


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
    totals = {CACHE_MISSES: 0.0, FALLBACKS: 0.0}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            for wanted in totals:
                name, label, value = wanted
                if sample.name == name and sample.labels.get(label) == value:
                    totals[wanted] += sample.value
    return Counters(totals[CACHE_MISSES], totals[FALLBACKS])


def per_thousand(before: Counters, after: Counters, requests: int) -> Activity:
    scale = 1000 / max(requests, 1)
    return Activity(
        (after.cache_misses - before.cache_misses) * scale,
        (after.fallbacks - before.fallbacks) * scale,
    )
