"""Celery's per-task lines are dropped; other Celery records lose their values."""

from __future__ import annotations

import logging

from celery.app import trace

from workers.lifecycle_log import CeleryTaskLinesFilter

CANARY = "canary-3c9e"


def _record(name: str, msg: str, args: object, level: int = logging.INFO) -> logging.LogRecord:
    record = logging.LogRecord(name, level, __file__, 1, msg, None, None)
    record.args = args  # type: ignore[assignment]
    return record


def test_celery_task_lines_are_dropped() -> None:
    """Received, succeeded (with the return value), failed, retried, rejected and ignored
    lines of Celery's tracer are not written: the lifecycle events replace them."""
    keep = CeleryTaskLinesFilter()
    fields = {"name": "t", "id": "1", "return_value": CANARY, "runtime": 0.1, "exc": CANARY}
    for fmt in (trace.LOG_SUCCESS, trace.LOG_FAILURE, trace.LOG_RETRY, trace.LOG_RECEIVED):
        assert keep.filter(_record("celery.app.trace", fmt, fields)) is False


def test_other_celery_records_keep_their_shape_without_values() -> None:
    """An internal error (same format as a failure, CRITICAL) stays, its exception text
    replaced; exception arguments of other Celery records become type names."""
    keep = CeleryTaskLinesFilter()
    internal = _record(
        "celery.app.trace",
        trace.LOG_INTERNAL_ERROR,
        {"name": "t", "id": "1", "description": "INTERNAL ERROR", "exc": CANARY},
        logging.CRITICAL,
    )
    assert keep.filter(internal) is True
    assert CANARY not in internal.getMessage()
    assert "t[1]" in internal.getMessage()
    handler = _record("celery.worker.request", "Task handler raised error: %r", (KeyError(CANARY),))
    assert keep.filter(handler) is True
    assert handler.getMessage() == "Task handler raised error: 'KeyError'"


def test_records_of_other_loggers_pass_untouched() -> None:
    """Only Celery's loggers are filtered."""
    record = _record("taskgate.worker", "sweep of %s", ("queue",))
    assert CeleryTaskLinesFilter().filter(record) is True
    assert record.getMessage() == "sweep of queue"


def test_event_exception_field_keeps_the_type_name_only() -> None:
    """What Celery puts in a task-failed or task-retried event (``safe_repr`` of the
    exception, or a name) is reduced to the exception's class name."""
    from workers.celery_ext.request import _type_name

    assert _type_name(f"ValueError('{CANARY}')") == "ValueError"
    assert (
        _type_name(f"workers.execution.redaction.ConnectionError('{CANARY}')") == "ConnectionError"
    )
    assert _type_name("TimeLimitExceeded") == "TimeLimitExceeded"
    assert _type_name(KeyError(CANARY)) == "KeyError"
    assert _type_name(f"<{CANARY}>") == "Error"
