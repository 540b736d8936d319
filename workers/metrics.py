"""A worker process's metric counts: counted in memory per task, flushed to Redis per interval.

:class:`WorkerMetrics` is what the task path calls: :meth:`~WorkerMetrics.begin` when a
delivery of a declared task reaches the pool process, :meth:`~WorkerMetrics.started` once
the start gate let it run, and :meth:`~WorkerMetrics.outcome` from the audit commit that
ends the run (``WorkerRuntime.commit``: every outcome is audited, so the audit action says
which one). Each is a few dict increments; nothing goes to Redis on the task's path.

A daemon thread per process (started on first use, after the pool forked) moves the counts
into ``tg:metrics:worker`` and the current minute's window every
``TASKGATE_METRICS_FLUSH_INTERVAL`` seconds, over a connection of its own - one pipeline
per interval, none while idle. A flush Redis did not take is kept for the next one. The
last counts go at process shutdown (Celery's ``worker_process_shutdown``); a process that
is killed loses at most one interval of counts.

Labels are the task's declared name and queue, the refusal's reason code and the
exception's class name - never a payload value, an exception message or a task id.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from datetime import datetime
from typing import Any

import redis
from celery import Celery, signals

from security.audit.actions import AuditAction
from security.tls import RedisTLS
from workers.contract import metrics as m
from workers.contract.keys import METRICS_WINDOW_TTL, METRICS_WORKER, metrics_window_key

__all__ = ["WorkerMetrics", "install", "queued_since"]

log = logging.getLogger("taskgate.worker")

AuditCounts = m.AuditCounts
UNKNOWN = "unknown"  # name and queue of a delivery refused before its task was known


class WorkerMetrics:
    """Counts of one worker process and the thread that flushes them."""

    def __init__(
        self,
        redis_tls: RedisTLS | None,
        *,
        interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.buffer = m.MetricsBuffer()
        self.interval = interval
        self._tls = redis_tls
        self._clock = clock
        self._local = threading.local()
        self._lock = threading.Lock()
        self._pid = -1
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._client: redis.Redis | None = None
        self._audit = m.AuditDelta("worker")
        # A forked pool process starts with empty counts and free locks: what the parent
        # had pending is the parent's to flush (else counted twice), and a lock its flusher
        # thread held at the fork would never be released in the child.
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _forked(ref))

    # --- counting (the task's thread) ------------------------------------------------

    def begin(self, name: str, queue: str, *, received: bool = True) -> None:
        """A delivery of task ``name`` from ``queue`` reached this process's checks."""
        self._local.task = (name, queue)
        self._local.started = None
        if received:
            self.buffer.inc(m.RECEIVED, name, queue)
        self._ensure_flusher()

    def started(self, waited: float | None) -> None:
        """The start gate let the run start, ``waited`` seconds after it was due."""
        task = getattr(self._local, "task", None)
        if task is None:
            return
        self.buffer.inc(m.STARTED, *task)
        if waited is not None:
            self.buffer.observe(m.QUEUE_WAIT, waited, *task)
        self._local.started = time.monotonic()

    def outcome(self, action: str, reason: str) -> None:
        """The audit ``action`` (``task.succeeded``, ...) that ended this process's current
        task, with its ``reason`` (its first word is a reason code or exception type)."""
        if not action.startswith("task."):
            return
        task = getattr(self._local, "task", None)
        kind = reason.split(" ", 1)[0]
        if task is None:
            # Refused by the main process before any task code (no trusted name to label
            # it with: the message's headers are the sender's say-so).
            if action == AuditAction.TASK_REFUSED:
                self.buffer.inc(m.REJECTED, UNKNOWN, UNKNOWN)
                self.buffer.inc(m.ENVELOPE_REFUSALS, kind)
                self._ensure_flusher()
            return
        self._local.task = None  # one outcome per delivery
        name = task[0]
        buffer = self.buffer
        match action:
            case AuditAction.TASK_SUCCEEDED:
                buffer.inc(m.SUCCEEDED, *task)
            case AuditAction.TASK_FAILED:
                buffer.inc(m.FAILED, *task)
                buffer.inc(m.FAILURES, name, kind)
            case AuditAction.TASK_RETRIED:
                buffer.inc(m.RETRIED, *task)
                buffer.inc(m.FAILURES, name, kind)
            case AuditAction.TASK_DEAD_LETTERED:
                buffer.inc(m.FAILED, *task)
                buffer.inc(m.DEAD_LETTERS, name)
                buffer.inc(m.FAILURES, name, kind)
            case AuditAction.TASK_REFUSED:
                buffer.inc(m.REJECTED, *task)
                buffer.inc(m.ENVELOPE_REFUSALS, kind)
            case AuditAction.TASK_REVOKED:
                buffer.inc(m.REVOKED, *task)
            case _:
                return
        began = getattr(self._local, "started", None)
        if began is not None:
            buffer.observe(m.RUNTIME, time.monotonic() - began, *task)
            self._local.started = None

    def audit_counts(self, source: AuditCounts) -> None:
        """Where this process's audit writer keeps its (appended, conflicts) counts."""
        self._audit.attach(source)

    # --- flushing ----------------------------------------------------------------------

    def flush(self) -> bool:
        """Write the pending counts to Redis; False if there were some and Redis did not
        take them (they are kept for the next flush)."""
        counts = self.buffer.drain()
        counts.update(self._audit.take())
        if not counts:
            return True
        window = metrics_window_key(self._clock())
        try:
            client = self._redis()
            with client.pipeline(transaction=False) as pipe:
                m.apply(pipe, METRICS_WORKER, counts)
                m.apply(pipe, window, dict(m.windowed(counts)))
                pipe.expire(window, METRICS_WINDOW_TTL)
                pipe.execute()
        except (redis.RedisError, OSError) as exc:
            self.buffer.restore(counts)
            self._client = None
            log.warning("metrics flush failed (%s); kept for the next one", type(exc).__name__)
            return False
        return True

    def stop(self) -> None:
        """Stop the flusher and flush what is left (process shutdown)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        if self._pid == os.getpid():
            self.flush()

    def _redis(self) -> redis.Redis:
        if self._client is None:
            if self._tls is None:
                raise redis.ConnectionError("no Redis configured for metrics")
            self._client = self._tls.client(socket_timeout=5, socket_connect_timeout=5)
        return self._client

    def _ensure_flusher(self) -> None:
        pid = os.getpid()
        if self._pid == pid and self._thread is not None:
            return
        with self._lock:
            if self._pid == pid and self._thread is not None:
                return
            self._pid, self._client = pid, None  # a forked copy: a connection of its own
            self._stop = threading.Event()
            thread = threading.Thread(target=self._run, name="taskgate-metrics", daemon=True)
            self._thread = thread
            thread.start()

    def _run(self) -> None:
        stop = self._stop
        while not stop.wait(self.interval):
            self.flush()


def _forked(ref: weakref.ref[WorkerMetrics]) -> None:
    metrics = ref()
    if metrics is not None:
        metrics.buffer = m.MetricsBuffer()
        metrics._lock = threading.Lock()
        metrics._thread, metrics._client, metrics._pid = None, None, -1


def queued_since(issued_at: float, eta: Any, now: float) -> float | None:
    """Seconds a run waited: since its due time (a retry's ``eta``) or its seal's issue
    time; None if neither is known."""
    due = issued_at or None
    if isinstance(eta, str) and eta:
        with contextlib.suppress(ValueError):
            eta = datetime.fromisoformat(eta)
    if isinstance(eta, datetime):
        due = eta.timestamp()
    return None if due is None else max(0.0, now - due)


def install(app: Celery, metrics: WorkerMetrics) -> None:
    """Flush ``metrics`` when a pool process or the worker shuts down."""

    def flush_at_exit(**_: Any) -> None:
        try:
            metrics.stop()
        except Exception as exc:  # noqa: BLE001 - shutting down anyway
            log.warning("final metrics flush failed (%s)", type(exc).__name__)

    app.taskgate_metrics_flush = flush_at_exit  # type: ignore[attr-defined]  # kept referenced
    signals.worker_process_shutdown.connect(flush_at_exit, weak=False)
    signals.worker_shutdown.connect(flush_at_exit, weak=False)
