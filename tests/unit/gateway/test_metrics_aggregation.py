"""Summing every process's counts at scrape time, and the per-task window statistics."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from gateway.http.errors import ApiError
from gateway.http.problems import ClientQueueFull, GlobalQueueFull, InvalidPayload, RateLimited
from gateway.metrics import refusal_labels
from gateway.metrics_families import Gauges, families, merge
from gateway.stores.task_stats import quantile, task_stats, window_keys
from gateway.submission.ratelimit import LimitState
from security.errors import InputRejectedError, LeakDetectedError
from workers.contract import metrics as m
from workers.contract.keys import METRICS_WINDOW_PREFIX

REPO = Path(__file__).resolve().parents[3]
Hash = dict[bytes | str, bytes | str]  # a metrics hash as HGETALL reads it


def _exposition(hashes: list[Hash], gauges: Gauges | None = None) -> str:
    merged = merge(hashes)

    class Snapshot(Collector):
        def collect(self):  # type: ignore[no-untyped-def]
            return families(merged, gauges or Gauges())

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Snapshot())
    return generate_latest(registry).decode()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_counts_of_every_process_are_summed_per_label_set() -> None:
    gateway_a: Hash = {b"celery_task_sent|t|q": b"3", b"taskgate_tokens|issued": b"2"}
    gateway_b: Hash = {b"celery_task_sent|t|q": b"4"}
    samples = _samples(_exposition([gateway_a, gateway_b]))
    assert samples[("celery_task_sent_total", (("name", "t"), ("queue", "q")))] == 7
    assert samples[("taskgate_tokens_total", (("outcome", "issued"),))] == 2


def test_histograms_become_cumulative_with_count_and_sum_in_seconds() -> None:
    buffer = m.MetricsBuffer()
    for seconds in (0.001, 0.3, 0.3, 7200.0):
        buffer.observe(m.RUNTIME, seconds, "t", "q")
    raw: Hash = {k.encode(): str(v).encode() for k, v in buffer.drain().items()}
    samples = _samples(_exposition([raw, raw]))  # two workers, same counts
    labels = (("name", "t"), ("queue", "q"))
    assert samples[("celery_task_runtime_count", labels)] == 8
    assert samples[("celery_task_runtime_sum", labels)] == pytest.approx(2 * 7200.601)
    assert samples[("celery_task_runtime_bucket", (("le", "0.005"), *labels))] == 2
    assert samples[("celery_task_runtime_bucket", (("le", "0.5"), *labels))] == 6
    assert samples[("celery_task_runtime_bucket", (("le", "3600.0"), *labels))] == 6
    assert samples[("celery_task_runtime_bucket", (("le", "+Inf"), *labels))] == 8


def test_unknown_fields_and_values_that_are_not_numbers_are_skipped() -> None:
    raw: Hash = {b"celery_task_sent|t|q": b"x", b"made_up|a": b"1", b"celery_task_sent|t": b"1"}
    samples = _samples(_exposition([raw]))
    assert not [k for k in samples if k[0] in {"celery_task_sent_total", "made_up"}]


def test_every_family_is_present_before_anything_was_counted() -> None:
    text = _exposition([])
    names = {f.name for f in text_string_to_metric_families(text)}
    expected = {d.name for d in m.DEFINITIONS}
    expected |= {"celery_queue_length", "celery_worker_up", "celery_worker_tasks_active"}
    assert expected <= names


def test_scrape_time_gauges() -> None:
    gauges = Gauges(
        queue_lengths={"taskgate": 5},
        workers_up={"host:1": True, "host:2": False},
        workers_active={"host:1": 2},
        checkpoint_age=12.5,
        dead_letters=3,
    )
    samples = _samples(_exposition([], gauges))
    assert samples[("celery_queue_length", (("queue_name", "taskgate"),))] == 5
    assert samples[("celery_worker_up", (("hostname", "host:1"),))] == 1
    assert samples[("celery_worker_up", (("hostname", "host:2"),))] == 0
    assert samples[("celery_worker_tasks_active", (("hostname", "host:1"),))] == 2
    assert samples[("taskgate_audit_checkpoint_age_seconds", ())] == 12.5
    assert samples[("taskgate_dead_letters_pending", ())] == 3


def test_quantiles_interpolate_within_the_bucket() -> None:
    bounds = (1.0, 2.0, 4.0)
    assert quantile(0.5, bounds, [0, 0, 0, 0]) is None
    assert quantile(0.5, bounds, [0, 10, 0, 0]) == 1.5
    assert quantile(0.95, bounds, [10, 0, 0, 0]) == pytest.approx(0.95)
    assert quantile(0.95, bounds, [0, 0, 0, 4]) == 4.0  # in +Inf: the highest bound


def test_task_stats_from_window_counts() -> None:
    buffer = m.MetricsBuffer()
    buffer.inc(m.SUCCEEDED, "t", "q", by=3)
    buffer.inc(m.FAILED, "t", "q")
    buffer.inc(m.RETRIED, "t", "q", by=2)
    buffer.inc(m.FAILURES, "t", "ConnectionError", by=2)
    buffer.inc(m.FAILURES, "t", "ValueError")
    for _ in range(4):
        buffer.observe(m.RUNTIME, 0.3, "t", "q")
    raw: Hash = {k.encode(): str(v).encode() for k, v in buffer.drain().items()}
    stats = task_stats(merge([raw]))["t"]
    assert (stats.succeeded, stats.failed, stats.retried) == (3, 1, 2)
    assert stats.success_rate == 0.75
    assert stats.failure_types == {"ConnectionError": 2, "ValueError": 1}
    assert stats.runtime_p50 is not None
    assert 0.25 <= stats.runtime_p50 <= 0.5
    assert stats.public()["success_rate"] == 0.75


def test_a_window_covers_whole_minutes_back_from_now() -> None:
    keys = window_keys(now=1_000_030.0, seconds=120)
    assert keys == [f"{METRICS_WINDOW_PREFIX}{1_000_020 - 60 * i}" for i in range(2)]
    assert len(window_keys(now=0.0, seconds=1)) == 1


def test_refusals_are_labelled_by_scope_and_check() -> None:
    """Each refusal counts under the limit scope or input check its error type's row names."""
    limits = [LimitState("client", 1, 1, 0, True), LimitState("task", 1, 0, 0, False)]
    limited = RateLimited(limits)
    assert refusal_labels(limited, limits) == (["task"], None)
    assert refusal_labels(ClientQueueFull(3, 3), []) == (["client_queue"], None)
    assert refusal_labels(GlobalQueueFull(), []) == (["global_queue"], None)
    assert refusal_labels(LeakDetectedError("x"), []) == ([], "leak_guard")
    assert refusal_labels(InputRejectedError("x"), []) == ([], "validation")
    invalid = InvalidPayload("y")
    assert refusal_labels(invalid, []) == ([], "validation")
    assert refusal_labels(ApiError(403, "x", "y", kind="forbidden"), []) == ([], None)


def test_the_grafana_dashboard_parses_and_uses_only_known_metric_names() -> None:
    doc = json.loads((REPO / "docs" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in doc["panels"] for t in panel.get("targets", [])]
    assert exprs
    known = {d.name for d in m.DEFINITIONS} | {
        "celery_queue_length", "celery_worker_up", "celery_worker_tasks_active",
        "taskgate_audit_checkpoint_age_seconds", "taskgate_dead_letters_pending",
    }  # fmt: skip
    used = set()
    for expr in exprs:
        for name in re.findall(r"\b(celery_[a-z_]+|taskgate_[a-z_]+)", expr):
            base = re.sub(r"_(total|bucket|sum|count)$", "", name)
            assert base in known, name
            used.add(base)
    assert used == known  # every metric has a panel
