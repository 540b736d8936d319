"""Metric families from the counts every process wrote to Redis (pure: no Redis, no I/O).

:func:`families` sums the hashes of every role (``workers.contract.metrics``) into
Prometheus counter and histogram families - cumulative buckets, ``_sum`` in seconds - and
adds the gauges read at scrape time (:class:`Gauges`). A family is present, with no
samples, even before anything was counted, so dashboards and alerts see every name.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from workers.contract import metrics as m

__all__ = ["Gauges", "Histogram", "families", "merge", "text"]


def text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


@dataclass
class Histogram:
    """One histogram series: non-cumulative bucket counts (last: ``+Inf``), sum in µs."""

    counts: list[int]
    sum_micros: int = 0

    @property
    def count(self) -> int:
        return sum(self.counts)


@dataclass
class Merged:
    """Every role's counts, summed per series."""

    counters: dict[tuple[str, tuple[str, ...]], int] = field(default_factory=dict)
    histograms: dict[tuple[str, tuple[str, ...]], Histogram] = field(default_factory=dict)


def merge(hashes: Iterable[Mapping[bytes | str, bytes | str]]) -> Merged:
    """Sum the hashes' fields per metric and label values (unknown or malformed fields,
    and values that are not integers, are skipped)."""
    out = Merged()
    for raw in hashes:
        for key, value in raw.items():
            parsed = m.parse_field(text(key))
            try:
                number = int(text(value))
            except ValueError:
                continue
            if parsed is None:
                continue
            metric, labels, part = parsed
            series = (metric.name, labels)
            if metric.kind == "counter":
                out.counters[series] = out.counters.get(series, 0) + number
                continue
            hist = out.histograms.get(series)
            if hist is None:
                hist = out.histograms[series] = Histogram([0] * (len(metric.buckets) + 1))
            if part == "sum":
                hist.sum_micros += number
            else:
                hist.counts[int(part[1:])] += number
    return out


@dataclass(frozen=True)
class Gauges:
    """What /metrics reads at scrape time besides the counts."""

    queue_lengths: Mapping[str, int] = field(default_factory=dict)
    workers_up: Mapping[str, bool] = field(default_factory=dict)  # member -> beat within lapse
    workers_active: Mapping[str, int] = field(default_factory=dict)
    checkpoint_age: float | None = None  # seconds since the newest audit anchor
    dead_letters: int | None = None


def _buckets(metric: m.MetricDef, hist: Histogram) -> list[tuple[str, float]]:
    running = 0
    out: list[tuple[str, float]] = []
    for bound, count in zip((*metric.buckets, float("inf")), hist.counts, strict=True):
        running += count
        out.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
    return out


def families(merged: Merged, gauges: Gauges) -> Iterator[Metric]:
    """Every counter and histogram of :data:`~workers.contract.metrics.DEFINITIONS`, then
    the gauges."""
    for metric in m.DEFINITIONS:
        if metric.kind == "counter":
            counter = CounterMetricFamily(metric.name, metric.help, labels=metric.labels)
            for (name, labels), value in sorted(merged.counters.items()):
                if name == metric.name:
                    counter.add_metric(list(labels), value)
            yield counter
            continue
        family = HistogramMetricFamily(metric.name, metric.help, labels=metric.labels)
        for (name, labels), hist in sorted(merged.histograms.items()):
            if name == metric.name:
                family.add_metric(
                    list(labels), _buckets(metric, hist), sum_value=hist.sum_micros / 1_000_000
                )
        yield family
    yield from _gauges(gauges)


def _gauges(gauges: Gauges) -> Iterator[Metric]:
    queue = GaugeMetricFamily(
        "celery_queue_length", "Messages waiting in each queue", labels=["queue_name"]
    )
    for name, length in sorted(gauges.queue_lengths.items()):
        queue.add_metric([name], length)
    yield queue
    up = GaugeMetricFamily(
        "celery_worker_up", "1 if the worker beat within the lapse", labels=["hostname"]
    )
    for member, alive in sorted(gauges.workers_up.items()):
        up.add_metric([member], 1 if alive else 0)
    yield up
    active = GaugeMetricFamily(
        "celery_worker_tasks_active", "Tasks each live worker is running", labels=["hostname"]
    )
    for member, count in sorted(gauges.workers_active.items()):
        active.add_metric([member], count)
    yield active
    if gauges.checkpoint_age is not None:
        yield GaugeMetricFamily(
            "taskgate_audit_checkpoint_age_seconds",
            "Seconds since the newest signed audit checkpoint (anchor)",
            value=gauges.checkpoint_age,
        )
    if gauges.dead_letters is not None:
        yield GaugeMetricFamily(
            "taskgate_dead_letters_pending", "Dead letters waiting", value=gauges.dead_letters
        )
