"""Metric counts as they travel to Redis: hash fields, buffering, and the worker's events."""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime

import pytest

from workers.contract import metrics as m
from workers.metrics import WorkerMetrics, queued_since


def test_a_counter_is_one_field_per_label_set() -> None:
    buffer = m.MetricsBuffer()
    buffer.inc(m.SUCCEEDED, "email.send", "taskgate")
    buffer.inc(m.SUCCEEDED, "email.send", "taskgate")
    buffer.inc(m.SUCCEEDED, "report.build", "taskgate", by=3)
    assert buffer.drain() == {
        "celery_task_succeeded|email.send|taskgate": 2,
        "celery_task_succeeded|report.build|taskgate": 3,
    }
    assert buffer.drain() == {}


def test_a_histogram_observation_adds_one_bucket_and_the_sum_in_microseconds() -> None:
    buffer = m.MetricsBuffer()
    buffer.observe(m.RUNTIME, 0.3, "t", "q")  # 0.25 < 0.3 <= 0.5: bucket index 6
    buffer.observe(m.RUNTIME, 10_000.0, "t", "q")  # past the last bound: +Inf
    buffer.observe(m.RUNTIME, -1.0, "t", "q")  # a clock step back counts as 0
    counts = buffer.drain()
    assert counts["celery_task_runtime|t|q|b6"] == 1
    assert counts[f"celery_task_runtime|t|q|b{len(m.RUNTIME_BUCKETS)}"] == 1
    assert counts["celery_task_runtime|t|q|b0"] == 1
    assert counts["celery_task_runtime|t|q|sum"] == 10_000_300_000


def test_label_values_keep_to_a_safe_alphabet_and_length() -> None:
    assert m.label("email.send") == "email.send"
    assert m.label("a|b c\nd") == "a_b_c_d"
    assert m.label("") == "_"
    assert len(m.label("x" * 500)) == 80


def test_restored_counts_are_added_to_newer_ones() -> None:
    buffer = m.MetricsBuffer()
    buffer.inc(m.TOKENS, "issued")
    taken = buffer.drain()
    buffer.inc(m.TOKENS, "issued")
    buffer.restore(taken)
    assert buffer.drain() == {"taskgate_tokens|issued": 2}


def test_counting_from_threads_loses_nothing() -> None:
    buffer = m.MetricsBuffer()

    def count() -> None:
        for _ in range(2000):
            buffer.inc(m.RECEIVED, "t", "q")

    threads = [threading.Thread(target=count) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert buffer.drain() == {"celery_task_received|t|q": 8000}


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("celery_task_sent|t|q", ("celery_task_sent", ("t", "q"), "")),
        ("celery_task_runtime|t|q|b3", ("celery_task_runtime", ("t", "q"), "b3")),
        ("celery_task_runtime|t|q|sum", ("celery_task_runtime", ("t", "q"), "sum")),
        ("taskgate_tokens|issued", ("taskgate_tokens", ("issued",), "")),
    ],
)
def test_fields_parse_back(field: str, expected: tuple[str, tuple[str, ...], str]) -> None:
    parsed = m.parse_field(field)
    assert parsed is not None
    assert (parsed[0].name, parsed[1], parsed[2]) == expected


@pytest.mark.parametrize(
    "field",
    [
        "unknown_metric|a",
        "celery_task_sent|only-one-label",
        "celery_task_sent|t|q|extra",
        "celery_task_runtime|t|q",
        "celery_task_runtime|t|q|b99",
        "celery_task_runtime|t|q|bx",
        "celery_task_runtime|t|q|avg",
    ],
)
def test_fields_of_no_known_shape_are_skipped(field: str) -> None:
    assert m.parse_field(field) is None


def test_only_outcomes_runtime_and_failure_types_are_windowed() -> None:
    counts = {
        "celery_task_succeeded|t|q": 1,
        "celery_task_runtime|t|q|b1": 1,
        "taskgate_task_failures|t|ValueError": 1,
        "celery_task_received|t|q": 1,
        "celery_task_queue_wait_time|t|q|b1": 1,
    }
    assert dict(m.windowed(counts)) == {
        "celery_task_succeeded|t|q": 1,
        "celery_task_runtime|t|q|b1": 1,
        "taskgate_task_failures|t|ValueError": 1,
    }


def _worker() -> WorkerMetrics:
    metrics = WorkerMetrics(None)
    metrics._ensure_flusher = lambda: None  # type: ignore[method-assign]  # no thread here
    return metrics


def test_a_run_counts_received_started_its_outcome_and_runtime() -> None:
    metrics = _worker()
    metrics.begin("t", "q")
    metrics.started(2.0)
    metrics.outcome("task.succeeded", "attempt 1")
    counts = metrics.buffer.drain()
    for name in ("received", "started", "succeeded"):
        assert counts[f"celery_task_{name}|t|q"] == 1
    assert sum(v for k, v in counts.items() if k.startswith("celery_task_runtime|t|q|b")) == 1
    assert counts["celery_task_queue_wait_time|t|q|sum"] == 2_000_000


@pytest.mark.parametrize(
    ("action", "reason", "expected"),
    [
        ("task.failed", "UnsafeURLError (input refused)", {
            "celery_task_failed|t|q", "taskgate_task_failures|t|UnsafeURLError"}),
        ("task.retried", "ConnectionError attempt 1", {
            "celery_task_retried|t|q", "taskgate_task_failures|t|ConnectionError"}),
        ("task.dead_lettered", "ValueError after 1", {
            "celery_task_failed|t|q", "taskgate_dead_letters|t",
            "taskgate_task_failures|t|ValueError"}),
        ("task.refused", "bad_signature", {
            "celery_task_rejected|t|q", "taskgate_envelope_refusals|bad_signature"}),
        ("task.revoked", "revoked before start", {"celery_task_revoked|t|q"}),
    ],
)  # fmt: skip
def test_each_outcome_counts_where_it_should(action: str, reason: str, expected: set[str]) -> None:
    metrics = _worker()
    metrics.begin("t", "q")
    metrics.buffer.drain()
    metrics.outcome(action, reason)
    assert set(metrics.buffer.drain()) == expected  # not started: no runtime


def test_an_outcome_without_a_current_task_or_of_another_kind_counts_nothing() -> None:
    metrics = _worker()
    metrics.outcome("task.succeeded", "attempt 1")
    metrics.begin("t", "q")
    metrics.buffer.drain()
    metrics.outcome("admin.stats", "")
    assert metrics.buffer.drain() == {}


def test_one_delivery_counts_one_outcome() -> None:
    metrics = _worker()
    metrics.begin("t", "q")
    metrics.outcome("task.succeeded", "attempt 1")
    metrics.outcome("task.succeeded", "attempt 1")
    assert metrics.buffer.drain()["celery_task_succeeded|t|q"] == 1


def test_a_refusal_before_the_task_is_known_is_counted_without_its_claimed_name() -> None:
    metrics = _worker()
    metrics.outcome("task.refused", "not_sealed")
    assert metrics.buffer.drain() == {
        "celery_task_rejected|unknown|unknown": 1,
        "taskgate_envelope_refusals|not_sealed": 1,
    }


def test_a_flush_without_redis_keeps_the_counts() -> None:
    metrics = _worker()
    metrics.begin("t", "q")
    assert metrics.flush() is False
    assert metrics.buffer.drain() == {"celery_task_received|t|q": 1}


def test_audit_counts_are_flushed_as_deltas() -> None:
    """A worker's audit counts leave as what changed since the last flush, labelled worker."""
    metrics = _worker()
    seen = [5, 1]
    metrics.audit_counts(lambda: (seen[0], seen[1]))
    seen[0], seen[1] = 8, 2
    assert metrics._audit.take() == {
        "taskgate_audit_appends|worker": 3,
        "taskgate_audit_conflicts|worker": 1,
    }
    assert metrics._audit.take() == {}


def test_audit_delta_counts_nothing_until_attached() -> None:
    """Before a writer is attached there is nothing to count; after, only what is new."""
    delta = m.AuditDelta("gateway")
    assert delta.take() == {}
    delta.attach(lambda: (2, 0))
    assert delta.take() == {}


def test_queue_wait_is_measured_from_the_retry_due_time_else_the_seal() -> None:
    assert queued_since(100.0, None, 102.5) == 2.5
    eta = datetime.fromtimestamp(200.0, tz=UTC)
    assert queued_since(100.0, eta.isoformat(), 203.0) == 3.0
    assert queued_since(100.0, eta, 199.0) == 0.0
    assert queued_since(0.0, None, 10.0) is None
    assert queued_since(100.0, "not a date", 101.0) == 1.0


def test_a_forked_child_starts_with_no_pending_counts() -> None:
    """What the parent had pending is the parent's to flush: never counted twice."""
    metrics = _worker()
    metrics.begin("t", "q")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, json.dumps(metrics.buffer.drain()).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        seen = json.loads(pipe.read())
    os.waitpid(pid, 0)
    assert seen == {}
    assert metrics.buffer.drain() == {"celery_task_received|t|q": 1}
