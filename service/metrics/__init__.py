"""Metrics endpoint: Prometheus metrics that stay exact across worker processes."""

from service.metrics.exposition import metrics_endpoint, render_metrics
from service.metrics.middleware import RequestMetricsMiddleware
from service.metrics.multiprocess import mark_worker_dead, prepare_multiprocess_dir
from service.metrics.pool import InstrumentedAsyncQueuePool, instrument_engine
from service.metrics.registry import Metrics, create_metrics, label_incrementer
from service.metrics.resources import run_resource_sampler

__all__ = [
    "InstrumentedAsyncQueuePool",
    "Metrics",
    "RequestMetricsMiddleware",
    "create_metrics",
    "instrument_engine",
    "label_incrementer",
    "mark_worker_dead",
    "metrics_endpoint",
    "prepare_multiprocess_dir",
    "render_metrics",
    "run_resource_sampler",
]
