"""The deployment-wide metrics: their names and labels, and how counts travel to Redis.

Every process (gateway or worker) counts into a :class:`MetricsBuffer` in memory - a dict
increment per event, nothing per task on the network - and a flusher moves the buffered
counts into Redis hashes once per interval with ``HINCRBY`` (one pipeline per process per
interval, and only when something was counted). ``/metrics`` then sums what every process
wrote: one scrape gives the whole deployment, however many gateway processes and worker
hosts there are.

Hash fields are ``metric|label|label...``; a histogram observation adds to one bucket field
(``...|b<index>``, not cumulative; the last index is ``+Inf``) and to ``...|sum`` (in
microseconds, so that ``HINCRBY`` adds integers). Label values are names from code - task
names, queues, reasons, exception class names - never a payload value, a result, a
client id or a task id; :func:`label` keeps them short and to a safe alphabet.

Dependency-free, so the gateway reads the same definitions the workers write by.
"""

from __future__ import annotations

import bisect
import functools
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal, Protocol

__all__ = [
    "BY_NAME",
    "DEFINITIONS",
    "RUNTIME_BUCKETS",
    "SEP",
    "SUBMIT_BUCKETS",
    "WINDOWED",
    "AuditCounts",
    "AuditDelta",
    "MetricDef",
    "MetricsBuffer",
    "apply",
    "label",
    "parse_field",
    "windowed",
]

SEP: Final = "|"
Kind = Literal["counter", "histogram"]

# Seconds. Task runtimes and queue waits span milliseconds to the hour time limit.
RUNTIME_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    600.0, 1800.0, 3600.0,
)  # fmt: skip
SUBMIT_BUCKETS: Final = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.:\-]")


def label(value: str) -> str:
    """A label value as stored: at most 80 characters of ``[A-Za-z0-9_.:-]`` (others
    become ``_``), ``_`` if empty."""
    return _UNSAFE.sub("_", value[:80]) or "_"


@functools.lru_cache(maxsize=4096)
def _field(name: str, values: tuple[str, ...]) -> str:
    """The hash field of a series (cached: the same few series are counted over and over)."""
    return SEP.join((name, *map(label, values)))


@dataclass(frozen=True)
class MetricDef:
    """One metric family. ``name`` is the exposition name without ``_total``."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()


def _counter(name: str, help_: str, *labels: str) -> MetricDef:
    return MetricDef(name, "counter", help_, labels)


_TASK = ("name", "queue")

# Written by workers (tg:metrics:worker).
RECEIVED = _counter("celery_task_received", "Deliveries that reached a worker's checks", *_TASK)
STARTED = _counter("celery_task_started", "Task runs started", *_TASK)
SUCCEEDED = _counter("celery_task_succeeded", "Task runs that succeeded", *_TASK)
FAILED = _counter(
    "celery_task_failed", "Tasks that failed for good (dead-lettered included)", *_TASK
)
REJECTED = _counter("celery_task_rejected", "Deliveries refused by a worker's checks", *_TASK)
REVOKED = _counter("celery_task_revoked", "Tasks that ended revoked", *_TASK)
RETRIED = _counter("celery_task_retried", "Failed runs scheduled for a retry", *_TASK)
RUNTIME = MetricDef(
    "celery_task_runtime", "histogram", "Run time of finished runs (s)", _TASK, RUNTIME_BUCKETS
)
QUEUE_WAIT = MetricDef(
    "celery_task_queue_wait_time",
    "histogram",
    "Time from submission (or a retry's due time) to the start of the run (s)",
    _TASK,
    RUNTIME_BUCKETS,
)
ENVELOPE_REFUSALS = _counter(
    "taskgate_envelope_refusals", "Deliveries a worker refused, by reason", "reason"
)
DEAD_LETTERS = _counter("taskgate_dead_letters", "Tasks moved to the dead letters", "task")
FAILURES = _counter(
    "taskgate_task_failures", "Failed runs by exception type (retried or not)", "task", "type"
)
AUDIT_APPENDS = _counter("taskgate_audit_appends", "Audit records appended", "role")
AUDIT_CONFLICTS = _counter(
    "taskgate_audit_conflicts", "Audit appends that lost the race for the head", "role"
)

# Written by gateways (tg:metrics:gateway).
SENT = _counter("celery_task_sent", "Tasks the gateway queued for workers", *_TASK)
SUBMISSIONS = _counter(
    "taskgate_submissions", "Task submissions by task and outcome", "task", "outcome"
)
TOKENS = _counter("taskgate_tokens", "Token requests by outcome", "outcome")
LIMIT_REFUSALS = _counter(
    "taskgate_limit_refusals", "Submissions refused by a rate limit or backpressure", "scope"
)
INPUT_REFUSALS = _counter(
    "taskgate_input_refusals",
    "Submissions refused by validation or the leak guard",
    "task",
    "check",
)
SUBMIT_SECONDS = MetricDef(
    "taskgate_submit_seconds",
    "histogram",
    "Time to accept a submission (s)",
    ("task",),
    SUBMIT_BUCKETS,
)
# Written by gateways and the operator's CLI (tg:metrics:operator).
REPLAYS = _counter("taskgate_dead_letter_replays", "Dead letters requeued by an operator", "task")

DEFINITIONS: Final[tuple[MetricDef, ...]] = (
    SENT, RECEIVED, STARTED, SUCCEEDED, FAILED, REJECTED, REVOKED, RETRIED, RUNTIME, QUEUE_WAIT,
    SUBMISSIONS, TOKENS, LIMIT_REFUSALS, INPUT_REFUSALS, SUBMIT_SECONDS, ENVELOPE_REFUSALS,
    DEAD_LETTERS, REPLAYS, FAILURES, AUDIT_APPENDS, AUDIT_CONFLICTS,
)  # fmt: skip
BY_NAME: Final[Mapping[str, MetricDef]] = {d.name: d for d in DEFINITIONS}
# Also counted per minute (``tg:metrics:worker:w:<minute>``) for `taskgate stats`.
WINDOWED: Final[frozenset[str]] = frozenset(
    d.name for d in (SUCCEEDED, FAILED, RETRIED, REJECTED, REVOKED, RUNTIME, FAILURES)
)


def parse_field(field: str) -> tuple[MetricDef, tuple[str, ...], str] | None:
    """``(metric, label values, part)`` of a hash field; ``part`` is ``""`` for a counter,
    ``b<i>`` or ``sum`` for a histogram. None for a field of no known metric (written by
    a newer or older version) or of the wrong shape."""
    name, _, rest = field.partition(SEP)
    metric = BY_NAME.get(name)
    if metric is None:
        return None
    parts = tuple(rest.split(SEP)) if rest else ()
    if metric.kind == "counter":
        return (metric, parts, "") if len(parts) == len(metric.labels) else None
    if len(parts) != len(metric.labels) + 1:
        return None
    part = parts[-1]
    if part != "sum" and not (
        part.startswith("b") and part[1:].isdigit() and int(part[1:]) <= len(metric.buckets)
    ):
        return None
    return metric, parts[:-1], part


class MetricsBuffer:
    """Counts not yet in Redis, by hash field (thread-safe: a worker's flusher runs on a
    thread of its own)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, int] = {}

    def inc(self, metric: MetricDef, *values: str, by: int = 1) -> None:
        """Add ``by`` to a counter with these label values."""
        field = _field(metric.name, values)
        with self._lock:
            self._pending[field] = self._pending.get(field, 0) + by

    def observe(self, metric: MetricDef, seconds: float, *values: str) -> None:
        """Add one observation of ``seconds`` to a histogram."""
        seconds = max(0.0, seconds)
        base = _field(metric.name, values)
        bucket = f"{base}{SEP}b{bisect.bisect_left(metric.buckets, seconds)}"
        total = f"{base}{SEP}sum"
        micros = round(seconds * 1_000_000)
        with self._lock:
            pending = self._pending
            pending[bucket] = pending.get(bucket, 0) + 1
            pending[total] = pending.get(total, 0) + micros

    def drain(self) -> dict[str, int]:
        """Take every pending count (the buffer is empty afterwards)."""
        with self._lock:
            pending, self._pending = self._pending, {}
        return pending

    def restore(self, counts: Mapping[str, int]) -> None:
        """Put back counts a flush could not write (Redis unreachable): they go next time."""
        with self._lock:
            for field, by in counts.items():
                self._pending[field] = self._pending.get(field, 0) + by

    def __bool__(self) -> bool:
        return bool(self._pending)


def windowed(counts: Mapping[str, int]) -> Iterable[tuple[str, int]]:
    """The counts that also go to the per-minute window hash."""
    return ((f, n) for f, n in counts.items() if f.partition(SEP)[0] in WINDOWED)


def apply(pipe: _Pipeline, key: str, counts: Mapping[str, int]) -> None:
    """Queue ``HINCRBY key field n`` for every count on ``pipe`` (sync or asyncio)."""
    for field, by in counts.items():
        if by:
            pipe.hincrby(key, field, by)


class _Pipeline(Protocol):
    def hincrby(self, name: str, key: str, amount: int = 1) -> object: ...


AuditCounts = Callable[[], tuple[int, int]]


class AuditDelta:
    """What a process's audit writer appended (and lost to conflicts) since the last
    :meth:`take`, as metric counts labelled with the writing ``role``."""

    def __init__(self, role: str) -> None:
        self._role = role
        self._source: AuditCounts | None = None
        self._seen = (0, 0)

    def attach(self, source: AuditCounts) -> None:
        """Where the writer keeps its (appended, conflicts) counts; counting starts now."""
        self._source = source
        self._seen = source()

    def take(self) -> dict[str, int]:
        if self._source is None:
            return {}
        appended, conflicts = now = self._source()
        seen_appended, seen_conflicts = self._seen
        self._seen = now
        out = {}
        if appended > seen_appended:
            out[SEP.join((AUDIT_APPENDS.name, self._role))] = appended - seen_appended
        if conflicts > seen_conflicts:
            out[SEP.join((AUDIT_CONFLICTS.name, self._role))] = conflicts - seen_conflicts
        return out
