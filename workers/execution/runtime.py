"""What a worker process's tasks share at run time: keys, its Redis client, the audit
writer, the lifecycle scripts - and the rule that an unreachable Redis requeues a message
rather than failing it. :mod:`workers.execution.task` runs tasks on top of it; the sweeper, the
consumer and cancellation use it too.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NoReturn

import redis
from celery import Celery
from celery.exceptions import Reject
from kombu.exceptions import OperationalError

from security.audit import AuditRecord, AuditWriter, Outcome, Write
from security.audit.actions import AuditAction
from security.audit.head_slot import HeadSlot
from security.audit.store import Fence
from security.errors import AuditError
from security.keystore import KeyRing
from security.tls import RedisTLS
from workers.contract.catalogue import Catalogue
from workers.lifecycle import Lifecycle
from workers.metrics import WorkerMetrics

__all__ = ["ACTOR", "WorkerRuntime"]

log = logging.getLogger("taskgate.worker")
ACTOR = f"worker:{socket.gethostname()}"


class _Forks:
    """Forks this process descends from since import: a client made before the last one
    belongs to the parent. (Cheaper than ``os.getpid()``, a system call, on every use.)"""

    count = 0


def _forked() -> None:
    _Forks.count += 1


os.register_at_fork(after_in_child=_forked)


@dataclass
class WorkerRuntime:
    """What tasks need at run time: keys, Redis, the audit log, the catalogue.

    Redis clients are per process (the prefork pool forks after start-up). The audit head
    slot is made with the runtime, in the worker's main process, so that its pool
    processes share it: each announces the head its commit will make, and the others chain
    after it instead of conflicting with it (``security.audit.head_slot``).
    """

    keys: KeyRing
    redis_tls: RedisTLS
    catalogue: Catalogue
    record_ttl: int = 2 * 86_400
    max_runs: int = 3  # runs of one attempt; when all were cut off, it is dead-lettered
    metrics: WorkerMetrics = field(default_factory=lambda: WorkerMetrics(None))
    _fork: int = field(default=-1, repr=False)
    _client: redis.Redis | None = field(default=None, repr=False)
    _audit: AuditWriter | None = field(default=None, repr=False)
    _lifecycle: Lifecycle | None = field(default=None, repr=False)
    _head_slot: HeadSlot = field(default_factory=HeadSlot, repr=False)

    def client(self) -> redis.Redis:
        """This process's client: one connection, kept (a pool process runs one task at a
        time; the lock redis-py holds around a single connection's commands covers the
        main process's threads). Connects on creation, so a call can raise if Redis is down:
        tasks ask for it inside their storage guard."""
        if self._client is None or self._fork != _Forks.count:
            # If connecting fails, nothing is kept: the next call tries again.
            self._client = self.redis_tls.client(
                socket_timeout=10, socket_connect_timeout=5, single_connection_client=True
            )
            self._audit = AuditWriter(self._client, self.keys.audit, shared=self._head_slot)
            self.metrics.audit_counts(self._audit.counts)
            self._lifecycle = Lifecycle(self._client)
            self._fork = _Forks.count
        return self._client

    def lifecycle(self) -> Lifecycle:
        self.client()
        if self._lifecycle is None:  # pragma: no cover - set by client()
            raise RuntimeError("lifecycle scripts missing")
        return self._lifecycle

    def audit_writer(self) -> AuditWriter:
        """This process's audit writer (on :meth:`client`'s connection; counted in the
        metrics), for callers that commit records of their own (the sweeper)."""
        self.client()
        if self._audit is None:  # pragma: no cover - set by client()
            raise RuntimeError("audit writer missing")
        return self._audit

    def audit(
        self, action: AuditAction, *, target: str, outcome: Outcome, reason: str = ""
    ) -> None:
        """Append to the audit chain; a failure to audit is logged, never swallowed silently."""
        self.commit(action, target=target, outcome=outcome, reason=reason, writes=[])

    def commit(
        self,
        action: AuditAction,
        *,
        target: str,
        outcome: Outcome,
        reason: str,
        writes: list[Write],
        fence: Sequence[Fence] = (),
    ) -> None:
        """Append to the audit chain with ``writes`` run in the same atomic script call
        (raises if the append fails, or if Redis refused one of the writes); with a
        ``fence``, only if its conditions hold (else ``AuditError`` ``fenced``)."""
        self.client()
        if self._audit is None:  # pragma: no cover - set by client()
            raise RuntimeError("audit writer missing")
        record = AuditRecord.make(
            actor=ACTOR, action=action, target=target, outcome=outcome, reason=reason
        )
        (done,) = self._audit.commit_many([(record, writes)], fence=fence)
        if done.write_error is not None:
            raise redis.ResponseError(f"a write after {action} was refused")
        self.metrics.outcome(action, reason)

    def observe_audit_head(self, raw: str) -> None:
        """The audit head the start gate read: the next append rarely conflicts then."""
        self.client()
        if self._audit is not None:
            self._audit.observe_head(raw)


# Redis unreachable: down, restarting, still loading its append-only file, or too slow.
_STORAGE_DOWN: tuple[type[BaseException], ...] = (
    redis.ConnectionError,  # BusyLoadingError is one
    redis.TimeoutError,
    OperationalError,  # kombu's wrapper, from the publish inside Task.retry
)


def _storage_down(exc: object) -> bool:
    if isinstance(exc, AuditError):
        return exc.reason == "unavailable"
    return isinstance(exc, _STORAGE_DOWN)


@contextmanager
def _requeue_if_storage_down(task_id: str) -> Iterator[None]:
    """Put the message back when Redis fails under the worker's own bookkeeping.

    Letting the error fail the task would acknowledge the message
    (``task_acks_on_failure_or_timeout``) as soon as Redis answers again, and the task
    would be lost with its record stuck at queued or started. Requeued, the step runs
    again on redelivery; if Redis is still down the requeue fails as well and the message
    stays unacknowledged until the visibility timeout hands it out again.
    """
    try:
        yield
    except Reject as exc:
        # Task.retry turns a failed publish into Reject(requeue=False), which drops it too.
        # (celery-types does not declare Reject's attributes.)
        cause = getattr(exc, "reason", None)
        if not getattr(exc, "requeue", False) and _storage_down(cause):
            _requeue(task_id, cause)
        raise
    except Exception as exc:
        if _storage_down(exc):
            _requeue(task_id, exc)
        raise


def _requeue(task_id: str, exc: object) -> NoReturn:
    log.warning("task %s: Redis unreachable (%s); message requeued", task_id, type(exc).__name__)
    raise Reject("storage_unavailable", requeue=True) from None


def _runtime(app: Celery) -> WorkerRuntime:
    runtime = getattr(app, "taskgate_runtime", None)
    if not isinstance(runtime, WorkerRuntime):
        raise RuntimeError("worker runtime not configured: build the app with create_celery()")
    return runtime
