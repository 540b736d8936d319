"""Prometheus metrics for one gateway process (labels: task, outcome, status - never payload).

Served by ``gateway.routes_metrics``. With ``--workers N`` each process keeps its own
counters; scrape each process or aggregate the per-instance series.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
)

__all__ = ["Metrics"]


class Metrics:
    """The gateway's counters, in a registry of their own (tests build many apps)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.submissions = Counter(
            "taskgate_submissions_total",
            "Task submissions by task and outcome",
            ["task", "outcome"],
            registry=self.registry,
        )
        self.tokens = Counter(
            "taskgate_tokens_total",
            "Token requests by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "taskgate_submit_seconds",
            "Time to accept or refuse a submission",
            ["task"],
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=self.registry,
        )
