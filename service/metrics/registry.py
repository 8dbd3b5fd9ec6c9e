"""The metric objects, created per app (no import-time registration) with DESIGN.md's names."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """Every gatekey metric; pass `registry=None` in multiprocess mode (files are collected)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.registry = registry
        self.http_requests = Counter(
            "gatekey_http_requests",
            "HTTP requests served, by route template",
            ["method", "route", "status"],
            registry=registry,
        )
        self.http_request_duration = Histogram(
            "gatekey_http_request_duration_seconds",
            "HTTP request latency, by route template",
            ["method", "route"],
            registry=registry,
        )
        self.db_pool_size = Gauge(
            "gatekey_db_pool_size",
            "Configured pool size",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.db_pool_checked_out = Gauge(
            "gatekey_db_pool_checked_out",
            "Connections checked out of the pool",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.db_pool_overflow = Gauge(
            "gatekey_db_pool_overflow",
            "Overflow connections in use",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.db_pool_wait = Histogram(
            "gatekey_db_pool_wait_seconds",
            "Time spent waiting for a pooled connection",
            registry=registry,
        )
        self.db_pool_timeouts = Counter(
            "gatekey_db_pool_timeouts", "Pool checkouts that timed out", registry=registry
        )
        self.key_verifications = Counter(
            "gatekey_key_verifications", "Key verification results", ["result"], registry=registry
        )
        self.key_cache_requests = Counter(
            "gatekey_key_cache_requests", "Key cache lookups", ["outcome"], registry=registry
        )
        self.ratelimit_decisions = Counter(
            "gatekey_ratelimit_decisions", "Rate-limit decisions", ["decision"], registry=registry
        )
        self.worker_resident_memory = Gauge(
            "gatekey_worker_resident_memory_bytes",
            "Worker resident memory",
            ["pid"],
            multiprocess_mode="liveall",
            registry=registry,
        )
        self.worker_cpu_seconds = Gauge(
            "gatekey_worker_cpu_seconds_total",
            "Worker CPU time (user + system)",
            ["pid"],
            multiprocess_mode="liveall",
            registry=registry,
        )
        self.usage_flushes = Counter(
            "gatekey_usage_flush", "Usage flushes to PostgreSQL", ["result"], registry=registry
        )
        self.usage_pending = Gauge(
            "gatekey_usage_pending",
            "Keys with usage not yet flushed",
            multiprocess_mode="mostrecent",
            registry=registry,
        )
