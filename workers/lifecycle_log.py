"""A task's life as log events, one per step, and Celery's own task lines kept out.

Events (logger ``taskgate.lifecycle``; the full reference is ``docs/logging.md``):

``task.received``  the worker's main process took the message off the queue
``task.started``   the start gate let this attempt run (``queue_wait``: seconds since the
                   gateway sealed it, or since its retry's ETA)
``task.succeeded`` / ``task.failed`` / ``task.dead_lettered`` / ``task.retried`` (with
``delay``) / ``task.revoked`` / ``task.refused`` (with ``reason``) / ``task.skipped`` (a
redelivery of a finished task) - the end of one run, with ``runtime``

Each carries ``task_id``, ``task_name``, ``queue``, ``attempt`` and ``request_id`` (the
gateway's, from the message's ``taskgate_request_id`` header), and the end of a run its
``outcome`` and, for a failure, ``failure_type``: the exception's class name, never its
message. Nothing here reads a task's arguments or its return value.

The end of a run is known to Celery's tracer (``task_postrun``: SUCCESS, RETRY, FAILURE,
REJECTED, IGNORED) but not *which* failure or *why* it was ignored; ``workers.execution.task``
says that with :func:`note` (a pool process runs one task at a time, so the run in
progress is module state). :class:`CeleryTaskLinesFilter` drops Celery's own per-task lines
(received, succeeded with its return value, failed or retried with the exception's text)
and reduces whatever else Celery logs to values-free text.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from celery import signals
from celery.app import trace

from security.logformat import configure_logging, get_logger
from workers.contract.wire import REQUEST_ID_HEADER

__all__ = [
    "LIFECYCLE_LOGGER",
    "REQUEST_ID_HEADER",
    "CeleryTaskLinesFilter",
    "admitted",
    "configure_worker_logging",
    "ended_in_main_process",
    "install",
    "note",
    "refused_message",
]

LIFECYCLE_LOGGER = "taskgate.lifecycle"

_UID = "taskgate.lifecycle_log"


@dataclass
class _Run:
    """What one pool process knows of the run in progress."""

    task_id: str
    started: float  # perf_counter at prerun
    outcome: str | None = None
    failure_type: str | None = None
    reason: str | None = None
    delay: float | None = None


class _Slot:
    """The run in progress in this process (a pool process runs one task at a time)."""

    run: _Run | None = None


_slot = _Slot()


def note(
    outcome: str,
    *,
    failure_type: str | None = None,
    reason: str | None = None,
) -> None:
    """Say how the run in progress ends when Celery's state alone does not:
    ``dead_lettered``, ``revoked``, ``refused`` (with ``reason``, a stable code).
    Nothing outside a run (the main process)."""
    run = _slot.run
    if run is not None:
        run.outcome = outcome
        run.failure_type = failure_type or run.failure_type
        run.reason = reason or run.reason


def _request_fields(request: Any) -> dict[str, Any]:
    info = getattr(request, "delivery_info", None) or {}
    return {
        "task_id": str(getattr(request, "id", "") or ""),
        "queue": info.get("routing_key") or None,
        "attempt": int(getattr(request, "retries", 0) or 0) + 1,
        "request_id": _request_id(getattr(request, REQUEST_ID_HEADER, None)),
    }


def _request_id(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= 128 else None


def admitted(task: Any, issued_at: float) -> None:
    """``task.started``: the start gate admitted this attempt of ``task`` (the running
    Celery task); ``issued_at`` is when the gateway sealed the message."""
    request = task.request
    since = issued_at
    eta = getattr(request, "eta", None)
    if isinstance(eta, str):
        with contextlib.suppress(ValueError):  # not an ISO time: from the seal's time
            since = max(since, datetime.fromisoformat(eta).timestamp())
    get_logger(LIFECYCLE_LOGGER).info(
        "task.started",
        task_name=task.name,
        **_request_fields(request),
        queue_wait=round(max(0.0, time.time() - since), 6),
    )


def refused_message(task_id: str, task_name: str, reason: str) -> None:
    """``task.refused`` for a message the main process refused before any task saw it."""
    get_logger(LIFECYCLE_LOGGER).warning(
        "task.refused",
        task_id=task_id,
        task_name=task_name,
        outcome="refused",
        reason=reason,
    )


def ended_in_main_process(request: Any, outcome: str, failure_type: str) -> None:
    """The end of a run decided by the main process (the pool process running it was
    killed at the hard time limit): ``task.<outcome>`` without a runtime."""
    fields = dict(request.request_dict) if hasattr(request, "request_dict") else {}
    info = getattr(request, "delivery_info", None) or {}
    get_logger(LIFECYCLE_LOGGER).warning(
        f"task.{outcome}",
        task_id=str(request.id),
        task_name=request.name,
        queue=info.get("routing_key") or None,
        attempt=int(fields.get("retries") or 0) + 1,
        request_id=_request_id(fields.get(REQUEST_ID_HEADER)),
        outcome=outcome,
        failure_type=failure_type,
    )


def _on_received(request: Any = None, **_: Any) -> None:
    if request is None:
        return
    fields = getattr(request, "request_dict", None) or {}  # read only
    info = getattr(request, "delivery_info", None) or {}
    get_logger(LIFECYCLE_LOGGER).info(
        "task.received",
        task_id=str(request.id),
        task_name=request.name,
        queue=info.get("routing_key") or None,
        attempt=int(fields.get("retries") or 0) + 1,
        request_id=_request_id(fields.get(REQUEST_ID_HEADER)),
        eta=fields.get("eta") or None,
    )


def _on_prerun(task_id: Any = None, **_: Any) -> None:
    _slot.run = _Run(task_id=str(task_id), started=time.perf_counter())


def _on_retry(reason: Any = None, **_: Any) -> None:
    run = _slot.run
    if run is not None:
        run.outcome = "retried"
        when = getattr(reason, "when", None)
        run.delay = float(when) if isinstance(when, (int, float)) else None
        exc = getattr(reason, "exc", None)
        run.failure_type = type(exc).__name__ if isinstance(exc, BaseException) else None


def _on_failure(exception: Any = None, **_: Any) -> None:
    run = _slot.run
    if run is not None and isinstance(exception, BaseException):
        run.failure_type = run.failure_type or type(exception).__name__


_BY_STATE = {
    "SUCCESS": "succeeded",
    "RETRY": "retried",
    "FAILURE": "failed",
    "REJECTED": "refused",
    "IGNORED": "skipped",
}
_LEVELS = {"succeeded": logging.INFO, "skipped": logging.INFO, "revoked": logging.INFO}


def _on_postrun(task_id: Any = None, task: Any = None, state: Any = None, **_: Any) -> None:
    run, _slot.run = _slot.run, None
    if task is None or getattr(task, "spec", None) is None:  # built-in tasks (system.ping)
        return
    if state is None:
        # Cut off mid-run (stopped at the hard time limit, the worker shutting down): the
        # main process decides and says what happens (``ended_in_main_process``), or the
        # message comes back.
        return
    runtime = time.perf_counter() - run.started if run is not None else None
    outcome = (run.outcome if run is not None else None) or _BY_STATE.get(str(state), "ended")
    if state == "SUCCESS":
        outcome = "succeeded"
    event: dict[str, Any] = {
        "task_name": task.name,
        **_request_fields(task.request),
        "outcome": outcome,
        "runtime": round(runtime, 6) if runtime is not None else None,
    }
    if run is not None and outcome not in {"succeeded", "skipped"}:
        if run.failure_type:
            event["failure_type"] = run.failure_type
        if run.reason:
            event["reason"] = run.reason
        if outcome == "retried":
            event["delay"] = round(run.delay, 6) if run.delay is not None else None
    event["task_id"] = str(task_id or event["task_id"])
    level = _LEVELS.get(outcome, logging.WARNING)
    get_logger(LIFECYCLE_LOGGER).log(level, f"task.{outcome}", **event)


class CeleryTaskLinesFilter(logging.Filter):
    """On the log handler: drop Celery's per-task lines (the lifecycle events replace
    them) and strip values from any other Celery record: exception arguments become
    their type's name, and the dictionary fields of the tracer's formats that hold a
    return value or an exception's text are replaced."""

    _VALUE_FIELDS = frozenset({"return_value", "exc", "description", "traceback", "args"})
    _VALUE_FIELDS_KW = frozenset({"kwargs"})

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("celery"):
            return True
        # LOG_INTERNAL_ERROR reads like LOG_FAILURE but is logged CRITICAL: kept, redacted.
        if record.levelno < logging.CRITICAL and record.msg in _task_line_formats():
            return False
        args = record.args
        if isinstance(args, dict):
            record.args = {
                k: ("(redacted)" if k in self._VALUE_FIELDS | self._VALUE_FIELDS_KW else v)
                for k, v in args.items()
            }
        elif isinstance(args, tuple):
            record.args = tuple(
                type(a).__name__ if isinstance(a, BaseException) else a for a in args
            )
        return True


def _task_line_formats() -> frozenset[Any]:
    return frozenset(
        {
            trace.LOG_RECEIVED,
            trace.LOG_SUCCESS,
            trace.LOG_FAILURE,
            trace.LOG_RETRY,
            trace.LOG_REJECTED,
            trace.LOG_IGNORED,
        }
    )


_PER_TASK_LOGGERS = ("celery.app.trace", "celery.worker.strategy")


def configure_worker_logging(log_format: str, loglevel: str | int = "INFO") -> str:
    """Set up this worker's logging our way (``security.logformat``), now and when Celery
    would set up its own: Celery skips its set-up when a ``setup_logging`` receiver
    exists. Pool processes are forked with the handler in place. Returns the format
    used (``json`` or ``text``)."""

    def setup(loglevel: Any = loglevel, **_: Any) -> str:
        chosen = configure_logging(
            log_format, loglevel or "INFO", filters=[CeleryTaskLinesFilter()]
        )
        # Celery's per-task INFO lines are replaced by the lifecycle events: below WARNING
        # its tracer and consumer do not even build them (the filter still drops any that
        # come at a level that passes).
        for name in _PER_TASK_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        return chosen

    chosen = setup()
    signals.setup_logging.connect(setup, weak=False, dispatch_uid=f"{_UID}.setup")
    return chosen


def install() -> None:
    """Connect the lifecycle events to Celery's signals (idempotent, process-wide)."""
    signals.task_received.connect(_on_received, weak=False, dispatch_uid=f"{_UID}.received")
    signals.task_prerun.connect(_on_prerun, weak=False, dispatch_uid=f"{_UID}.prerun")
    signals.task_retry.connect(_on_retry, weak=False, dispatch_uid=f"{_UID}.retry")
    signals.task_failure.connect(_on_failure, weak=False, dispatch_uid=f"{_UID}.failure")
    signals.task_postrun.connect(_on_postrun, weak=False, dispatch_uid=f"{_UID}.postrun")
