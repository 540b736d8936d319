"""Per-task statistics over a recent window: success rate, p50/p95 run time, failure types.

Read from the workers' per-minute count hashes (``tg:metrics:worker:w:<minute>``, written
by the same flushes as ``/metrics``): one pipelined round trip for the whole window. Run
times are estimated from the histogram buckets as Prometheus's ``histogram_quantile``
does (linear within the bucket). The admin stats route and ``taskgate stats`` show it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio

from gateway.metrics_families import Merged, merge
from workers.contract import metrics as m
from workers.contract.keys import METRICS_WINDOW, METRICS_WINDOW_TTL, metrics_window_key

__all__ = ["TaskStats", "quantile", "read_window", "task_stats", "window_keys"]

MAX_WINDOW = METRICS_WINDOW_TTL - 3600


@dataclass
class TaskStats:
    """One task's outcomes in the window."""

    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    rejected: int = 0
    revoked: int = 0
    runtime_p50: float | None = None
    runtime_p95: float | None = None
    failure_types: dict[str, int] = field(default_factory=dict)

    @property
    def success_rate(self) -> float | None:
        """Succeeded over finished (succeeded + failed for good); None before any."""
        finished = self.succeeded + self.failed
        return None if finished == 0 else self.succeeded / finished

    def public(self) -> dict[str, Any]:
        return {
            "succeeded": self.succeeded,
            "failed": self.failed,
            "retried": self.retried,
            "rejected": self.rejected,
            "revoked": self.revoked,
            "success_rate": self.success_rate,
            "runtime_p50_seconds": self.runtime_p50,
            "runtime_p95_seconds": self.runtime_p95,
            "failure_types": dict(sorted(self.failure_types.items())),
        }


def quantile(q: float, bounds: tuple[float, ...], counts: list[int]) -> float | None:
    """The ``q`` quantile of a histogram (non-cumulative ``counts``, the last one ``+Inf``),
    interpolated within its bucket; the highest finite bound if it falls in ``+Inf``."""
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    running = 0
    for index, count in enumerate(counts):
        if count and running + count >= rank:
            if index == len(bounds):
                return bounds[-1]
            lower = 0.0 if index == 0 else bounds[index - 1]
            return lower + (bounds[index] - lower) * (rank - running) / count
        running += count
    return bounds[-1]  # pragma: no cover - the loop always reaches the rank


_OUTCOMES = {
    m.SUCCEEDED.name: "succeeded",
    m.FAILED.name: "failed",
    m.RETRIED.name: "retried",
    m.REJECTED.name: "rejected",
    m.REVOKED.name: "revoked",
}


def task_stats(merged: Merged) -> dict[str, TaskStats]:
    """Per task name, from the window's merged counts."""
    out: dict[str, TaskStats] = {}
    for (metric, labels), value in merged.counters.items():
        if metric in _OUTCOMES:
            stats = out.setdefault(labels[0], TaskStats())
            setattr(stats, _OUTCOMES[metric], getattr(stats, _OUTCOMES[metric]) + value)
        elif metric == m.FAILURES.name:
            types = out.setdefault(labels[0], TaskStats()).failure_types
            types[labels[1]] = types.get(labels[1], 0) + value
    runtimes: dict[str, list[int]] = {}
    for (metric, labels), hist in merged.histograms.items():
        if metric == m.RUNTIME.name:
            counts = runtimes.setdefault(labels[0], [0] * len(hist.counts))
            runtimes[labels[0]] = [a + b for a, b in zip(counts, hist.counts, strict=True)]
    for name, counts in runtimes.items():
        stats = out.setdefault(name, TaskStats())
        stats.runtime_p50 = quantile(0.5, m.RUNTIME.buckets, counts)
        stats.runtime_p95 = quantile(0.95, m.RUNTIME.buckets, counts)
    return dict(sorted(out.items()))


def window_keys(now: float, seconds: int) -> list[str]:
    """The minute hashes covering the last ``seconds`` up to ``now`` (current one included)."""
    minutes = max(1, -(-seconds // METRICS_WINDOW))
    return [metrics_window_key(now - i * METRICS_WINDOW) for i in range(minutes)]


async def read_window(
    client: redis.asyncio.Redis, now: float, seconds: int
) -> dict[str, TaskStats]:
    """Per-task statistics of the last ``seconds`` (one pipelined round trip)."""
    async with client.pipeline(transaction=False) as pipe:
        for key in window_keys(now, seconds):
            pipe.hgetall(key)
        hashes: Iterable[Mapping[Any, Any]] = await pipe.execute()
    return task_stats(merge(hashes))
