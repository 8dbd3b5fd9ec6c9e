"""Metrics endpoint: Prometheus metrics that stay exact across worker processes."""

from service.metrics.registry import Metrics

__all__ = ["Metrics"]
