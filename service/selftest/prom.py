"""Reading a Prometheus text exposition: sums and per-label values of named samples."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True, slots=True)
class PromSample:
    name: str
    labels: dict[str, str]
    value: float


@dataclass(frozen=True, slots=True)
class Scrape:
    """One scrape of `/metrics`, looked up by sample name (`..._total`, `..._count` included)."""

    samples: tuple[PromSample, ...]

    def names(self) -> set[str]:
        return {sample.name for sample in self.samples}

    def total(self, name: str, **labels: str) -> float:
        """Sum of every sample called `name` whose labels include `labels`."""
        return sum(
            s.value
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )

    def total_where(self, name: str, label: str, accept: Callable[[str], bool]) -> float:
        """Sum of every sample called `name` whose `label` passes `accept` (e.g. 5xx statuses)."""
        return sum(
            s.value for s in self.samples if s.name == name and accept(s.labels.get(label, ""))
        )

    def by_label(self, name: str, label: str) -> dict[str, float]:
        """Values of `name` summed per value of `label` (e.g. memory per `pid`)."""
        values: dict[str, float] = {}
        for s in self.samples:
            if s.name == name and label in s.labels:
                values[s.labels[label]] = values.get(s.labels[label], 0.0) + s.value
        return values


def parse_scrape(text: str) -> Scrape:
    samples = tuple(
        PromSample(sample.name, dict(sample.labels), float(sample.value))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    )
    return Scrape(samples)
