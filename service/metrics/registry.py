"""The metric objects with gatekey's documented names, created per app and never at import time."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from importlib.metadata import version

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

from service.metrics.multiprocess import directory_lock, multiprocess_dir
from service.results import KeyCheckResult

# Label values known in advance are created at start, so every series exists (at 0) from the
# first scrape and `rate()` sees the first increment instead of a series appearing from nowhere.
# A missing key never reaches the guard that counts results.
VERIFICATION_RESULTS = tuple(
    result for result in KeyCheckResult if result is not KeyCheckResult.MISSING_KEY
)
CACHE_OUTCOMES = ("hit", "miss")
# `shadow_limited` is counted besides `allowed`/`limited`: a shadow limit would have refused.
RATELIMIT_DECISIONS = ("allowed", "limited", "usage_exceeded", "fallback", "shadow_limited")
USAGE_FLUSH_RESULTS = ("ok", "error")
USAGE_DROP_REASONS = ("full", "shutdown")

# Sub-millisecond answers are the norm for a cached key check, so the low end is finer than
# prometheus-client's default buckets.
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# A pooled connection is handed over in microseconds; the top buckets bracket DATABASE_POOL_TIMEOUT.
POOL_WAIT_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0)
# A pipelined batch on loopback takes ~100 us; the top buckets bracket the limiter's deadline
# (2 x REDIS_TIMEOUT, 0.1 s by default) and a slow network.
REDIS_ROUND_TRIP_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)  # fmt: skip


class Metrics:
    """Every gatekey metric.

    `registry` is where the metric objects register: a fresh `CollectorRegistry` per app in
    single-process mode, `None` in multiprocess mode, where values live in files under
    PROMETHEUS_MULTIPROC_DIR and `scrape_registry` merges every worker's files. Use
    `create_metrics()` rather than calling this directly in multiprocess mode.
    """

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.registry = registry
        self.scrape_registry = registry if registry is not None else _merging_registry()
        # Every living worker reports the same constant series; `livemostrecent` shows it once.
        self.build_info = Gauge(
            "gatekey_build_info",
            "Always 1; the label carries the running gatekey version",
            ["version"],
            multiprocess_mode="livemostrecent",
            registry=registry,
        )
        self.build_info.labels(version("gatekey")).set(1)
        self.http_requests = Counter(
            "gatekey_http_requests",
            "HTTP requests served, by route template (scrapes of /metrics excluded)",
            ["method", "route", "status"],
            registry=registry,
        )
        self.http_request_duration = Histogram(
            "gatekey_http_request_duration_seconds",
            "HTTP request latency, by route template",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
            registry=registry,
        )
        self.db_pool_size = self._per_worker("gatekey_db_pool_size", "Configured pool size")
        self.db_pool_checked_out = self._per_worker(
            "gatekey_db_pool_checked_out", "Connections checked out of the pool"
        )
        self.db_pool_overflow = self._per_worker(
            "gatekey_db_pool_overflow", "Connections open beyond the pool size"
        )
        self.db_pool_wait = Histogram(
            "gatekey_db_pool_wait_seconds",
            "Time to obtain a pooled connection (including opening one)",
            buckets=POOL_WAIT_BUCKETS,
            registry=registry,
        )
        self.db_pool_timeouts = Counter(
            "gatekey_db_pool_timeouts", "Pool checkouts that timed out", registry=registry
        )
        self.key_verifications = self._counter(
            "gatekey_key_verifications", "Key check results", "result", VERIFICATION_RESULTS
        )
        self.key_cache_requests = self._counter(
            "gatekey_key_cache_requests", "Key cache lookups", "outcome", CACHE_OUTCOMES
        )
        self.ratelimit_decisions = self._counter(
            "gatekey_ratelimit_decisions", "Rate-limit decisions", "decision", RATELIMIT_DECISIONS
        )
        self.ratelimit_near_limit = Counter(
            "gatekey_ratelimit_near_limit",
            "Admissions that left less than 20 % of some enforced limit",
            registry=registry,
        )
        self.ratelimit_breaker_open = self._per_worker(
            "gatekey_ratelimit_breaker_open",
            "1 while this worker's Redis circuit breaker is open (decisions by the fallback)",
        )
        self.redis_round_trip = Histogram(
            "gatekey_redis_round_trip_seconds",
            "Rate-limiter round trips to Redis, one per pipelined batch of checks",
            buckets=REDIS_ROUND_TRIP_BUCKETS,
            registry=registry,
        )
        self.usage_dropped = self._counter(
            "gatekey_usage_dropped",
            "Admitted requests whose usage was lost during a Redis outage",
            "reason",
            USAGE_DROP_REASONS,
        )
        self.usage_flushes = self._counter(
            "gatekey_usage_flush", "Usage flushes to PostgreSQL", "result", USAGE_FLUSH_RESULTS
        )
        # Summed over workers: only the one holding the prune gate deletes in a given interval.
        self.usage_pruned_rows = Counter(
            "gatekey_usage_pruned_rows",
            "Usage rows deleted for being older than USAGE_RETENTION",
            registry=registry,
        )
        # Every worker's flusher reports the same shared backlog (a Redis set): the latest report
        # from a living worker is the value, a sum would count it once per worker.
        self.usage_pending = Gauge(
            "gatekey_usage_pending",
            "Keys whose usage is not yet flushed to PostgreSQL",
            multiprocess_mode="livemostrecent",
            registry=registry,
        )
        # `liveall`: one series per living worker; a dead worker's series goes with its files.
        self.worker_resident_memory = Gauge(
            "gatekey_worker_resident_memory_bytes",
            "Worker resident memory",
            ["pid"],
            multiprocess_mode="liveall",
            registry=registry,
        )
        self.worker_cpu_seconds = Gauge(
            "gatekey_worker_cpu_seconds",
            "Worker CPU time, user plus system",
            ["pid"],
            multiprocess_mode="liveall",
            registry=registry,
        )

    def _per_worker(self, name: str, documentation: str) -> Gauge:
        """Each worker's own pool, one series per living worker (multiprocess mode adds the
        `pid` label); `sum()` over them is the deployment's."""
        return Gauge(name, documentation, multiprocess_mode="liveall", registry=self.registry)

    def _counter(
        self, name: str, documentation: str, label: str, known_values: tuple[str, ...]
    ) -> Counter:
        counter = Counter(name, documentation, [label], registry=self.registry)
        for value in known_values:
            counter.labels(value)
        return counter


class _FoldAwareCollector(MultiProcessCollector):
    """prometheus-client's merging collector, reading while no dead worker's file is being folded
    into the archive (which would otherwise be seen twice, or raise as it vanishes)."""

    def collect(self) -> Iterable[Metric]:
        with directory_lock(self._path, exclusive=False):
            return super().collect()  # type: ignore[no-any-return,no-untyped-call]


def _merging_registry() -> CollectorRegistry:
    """A registry whose only collector merges every worker's files and the dead workers' archive."""
    registry = CollectorRegistry(auto_describe=False)
    _FoldAwareCollector(registry, path=multiprocess_dir())  # type: ignore[no-untyped-call]
    return registry


# Multiprocess mode keeps one Metrics per process: two metric objects with the same name and
# labels would share one slot of the process's file, each caching its own value, and overwrite
# each other's increments.
_process_metrics: dict[int, Metrics] = {}


def create_metrics() -> Metrics:
    """The metrics for a new app: file-backed and shared within the process when
    PROMETHEUS_MULTIPROC_DIR is set, otherwise fresh with the app's own registry."""
    if multiprocess_dir() is None:
        return Metrics(CollectorRegistry())
    pid = os.getpid()
    if pid not in _process_metrics:
        _process_metrics[pid] = Metrics(None)
    return _process_metrics[pid]


def label_incrementer(counter: Counter) -> Callable[[str], None]:
    """`counter.labels(value).inc()` with each label's child looked up once, not per call."""
    children: dict[str, Counter] = {}

    def inc(value: str) -> None:
        child = children.get(value)
        if child is None:
            child = children[value] = counter.labels(value)
        child.inc()

    return inc
