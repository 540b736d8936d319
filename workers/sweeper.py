"""The sweeper: re-queue an accepted task whose broker message was lost before it started.

Why: a worker pops a message (``BRPOP``) and only then records it as in flight (``HSET
unacked <delivery tag>``) - for a gateway message its start gate does, from the copy below
(``workers.celery_ext.transport``). A Redis shutdown between the two persists the pop but never the
record, and the reply to the pop dies with the connection; a worker killed before its gate
takes the message along too: the message is gone, the task stays ``queued`` for ever (seen
about once in 500 tasks across a restart).

How: the gateway stores an exact copy of every broker message (``tg:msg:{id}``, expiring
with the sealed envelope) and a worker's start gate deletes it. One worker at a time
(``tg:sweep:lock``) walks the global queued set every ``sweep_interval`` seconds, oldest
first, skipping tasks younger than ``sweep_grace``. One script per batch looks at each
task whose record is still ``queued`` and whose copy exists: the message is *held* if its
delivery tag is in kombu's ``unacked`` hash or the message is in its queue list - the exact
bytes (``LPOS``, from the consuming end), else any entry with its delivery tag (a message
kombu put back is re-serialised with a ``redelivered`` flag). A message neither here nor
there is *missing*. Two strikes, because a message is legitimately missing between a
worker's pop and its record: the first sweep that finds it missing marks it
(``tg:sweep:suspect:{id}``); a sweep that finds it still missing once the mark is
``sweep_grace`` old pushes the copy back at the consuming end (``RPUSH``; kombu pops with
``BRPOP`` from the right) - after :data:`MAX_REQUEUES` times it gives up and drops the copy.
The script only looks and marks; each re-queue is then written through the one enqueue
path (``workers.contract.enqueue``): its audit record (``task.requeued_lost``), the push and
its bookkeeping in one atomic call, fenced on the task being still ``queued`` with the
re-queue count the sweep saw (a sweeper that lost its lock meanwhile cannot push it twice).
If the append fails, nothing is queued and the next sweep tries again. Giving up
(``task.requeue_abandoned``) is one such call too. Both are logged without payload.

Not the sweeper's business: a task past its start gate (started, retried, finished,
revoked) - a message a worker holds is in kombu's ``unacked`` hash and comes back through
the visibility timeout - and a message published without a copy (a retry).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import redis
from celery import Celery, bootsteps

from security.audit import AuditRecord, AuditWriter, Write
from security.audit.actions import AuditAction
from security.audit.store import Fence
from security.errors import AuditError, ConfigError
from security.lua import lua_script
from workers.celery_ext.transport import Channel
from workers.contract.enqueue import Enqueue, NotEnqueuedError, enqueue
from workers.contract.wire import (
    GLOBAL_QUEUED,
    KOMBU_UNACKED,
    KOMBU_UNACKED_INDEX,
    SWEEP_LOCK,
    TASK_ID,
    message_copy_key,
    suspect_key,
    task_key,
)
from workers.execution.runtime import ACTOR, WorkerRuntime
from workers.settings import WorkerSettings

__all__ = [
    "MAX_REQUEUES",
    "SweepResult",
    "Sweeper",
    "SweeperService",
    "SweeperStep",
    "install",
    "log_sweep",
]

log = logging.getLogger("taskgate.worker")

MAX_REQUEUES = 3  # a message lost more often than this is a fault to look at, not a race

# What it does, its KEYS and ARGV: the comment at the top of sweeper_lock.lua.
_LOCK = lua_script("workers", "sweeper_lock.lua")

# What it does, its KEYS and ARGV: the comment at the top of sweep.lua.
_SWEEP = lua_script("workers", "sweep.lua")


@dataclass
class SweepResult:
    """What one sweep did; ``swept`` is False when another worker holds the lock.
    ``failed``: (task id, reason) of re-queues (or give-ups) not written because their
    audit append or a write failed - nothing of them was queued; the next sweep retries."""

    swept: bool
    requeued: list[str] = field(default_factory=list)
    suspected: list[str] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Sweeper:
    """The sweep itself: lock, then one script per batch of old queued tasks, then one
    audited call per task it re-queues or gives up on.

    ``audit`` gives the audit writer those calls go through (the worker runtime's, made on
    first use); ``actor`` names the sweeper in their records.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        audit: Callable[[], AuditWriter],
        interval: float,
        grace: float,
        batch: int = 200,
        holder: str | None = None,
        actor: str = ACTOR,
    ) -> None:
        self.interval = interval
        self.grace = grace
        self.batch = batch
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.actor = actor
        self._audit = audit
        self._client = client
        self._lock = client.register_script(_LOCK)
        self._script = client.register_script(_SWEEP)

    def sweep(self, now: float | None = None) -> SweepResult:
        """One pass over the tasks queued before ``now - grace`` (if this sweeper holds the
        lock, which lasts two intervals and is renewed by each of its sweeps)."""
        moment = time.time() if now is None else now
        lock_ms = max(1000, int(self.interval * 2000))
        if not int(self._lock(keys=[SWEEP_LOCK], args=[self.holder, lock_ms])):
            return SweepResult(swept=False)
        result = SweepResult(swept=True)
        offset = 0
        while True:
            members = self._client.zrangebyscore(
                GLOBAL_QUEUED, "-inf", moment - self.grace, start=offset, num=self.batch
            )
            ids = [task_id for m in members if TASK_ID.fullmatch(task_id := _text(m))]
            if ids:
                self._check(ids, moment, result)
            if len(members) < self.batch:
                return result
            offset += len(members)  # ids that start meanwhile shift the rest: next sweep

    def _check(self, ids: list[str], now: float, result: SweepResult) -> None:
        keys = [KOMBU_UNACKED]
        for task_id in ids:
            keys += [task_key(task_id), message_copy_key(task_id), suspect_key(task_id)]
        mark_ttl_ms = int((self.grace + 4 * self.interval) * 1000)
        due, suspected, abandon = self._script(
            keys=keys, args=[f"{now:.6f}", self.grace, mark_ttl_ms, MAX_REQUEUES, *ids]
        )
        result.suspected += [_text(task_id) for task_id in suspected]
        for raw_id, queue, message, requeues in due:
            task_id = _text(raw_id)
            with _attempt(task_id, result):
                job = self._requeue(task_id, _text(queue), message)
                enqueue(self._audit(), job, fence=_fence(task_id, _text(requeues)))
                result.requeued.append(task_id)
        for raw_id, requeues in abandon:
            task_id = _text(raw_id)
            with _attempt(task_id, result):
                fence = _fence(task_id, _text(requeues))
                (done,) = self._audit().commit_many([self._give_up(task_id)], fence=fence)
                if done.write_error is not None:
                    raise NotEnqueuedError(done.write_error)
                result.abandoned.append(task_id)

    def _record(self, action: AuditAction, task_id: str, outcome: Any, reason: str) -> AuditRecord:
        return AuditRecord.make(
            actor=self.actor, action=action, outcome=outcome, target=task_id, reason=reason
        )

    def _requeue(self, task_id: str, queue: str, message: bytes) -> Enqueue:
        """The copy back at the consuming end, with its audit record, mark and count."""
        record = self._record(
            AuditAction.TASK_REQUEUED_LOST, task_id, "ok", "message missing; re-queued"
        )
        after = (
            Write("DEL", (suspect_key(task_id),)),
            Write("HINCRBY", (task_key(task_id),), ("requeues", "1")),
        )
        return Enqueue(record, task_id, queue, message, after=after, consuming_end=True)

    def _give_up(self, task_id: str) -> tuple[AuditRecord, list[Write]]:
        """The copy dropped (no more re-queues), with its audit record."""
        reason = f"lost {MAX_REQUEUES} times"
        record = self._record(AuditAction.TASK_REQUEUE_ABANDONED, task_id, "error", reason)
        return record, [
            Write("DEL", (suspect_key(task_id),)),
            Write("DEL", (message_copy_key(task_id),)),
        ]


def _fence(task_id: str, requeues: str) -> list[Fence]:
    """Still queued, re-queued as often as the sweep saw: else the task is no longer this
    sweep's (it started meanwhile, or a sweeper that took the lock over pushed it)."""
    return [(task_key(task_id), "state", "queued"), (task_key(task_id), "requeues", requeues)]


@contextmanager
def _attempt(task_id: str, result: SweepResult) -> Iterator[None]:
    """One task's audited write: a fence that no longer holds skips it; a failed append or
    a refused write is reported in ``result.failed`` (nothing was queued)."""
    try:
        yield
    except AuditError as exc:
        if exc.reason != "fenced":
            result.failed.append((task_id, exc.reason))
    except NotEnqueuedError:
        result.failed.append((task_id, "write_refused"))


class SweeperService:
    """Runs :class:`Sweeper` every interval on a daemon thread; audits and logs what it did.

    A failed sweep (Redis unreachable, anything else) is logged and tried again at the
    next interval; it never stops the thread or the worker.
    """

    def __init__(self, settings: WorkerSettings, runtime: WorkerRuntime) -> None:
        self._settings = settings
        self._runtime = runtime
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sweeper: Sweeper | None = None

    def start(self) -> None:
        settings = self._settings
        client = settings.redis.client(socket_timeout=10, socket_connect_timeout=5)
        self.sweeper = Sweeper(
            client,
            audit=self._runtime.audit_writer,
            interval=settings.sweep_interval,
            grace=settings.sweep_grace,
            batch=settings.sweep_batch,
        )
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="taskgate-sweeper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        interval = self._settings.sweep_interval
        while not self._stop.wait(interval):
            self.run_once()

    def run_once(self) -> None:
        """One sweep; every outcome is reported, every error logged, nothing raised."""
        if self.sweeper is None:
            return
        try:
            result = self.sweeper.sweep()
        except redis.RedisError as exc:  # the message may quote a key, never a payload
            log.warning("sweep failed (%s); next in %gs", type(exc).__name__, self.sweeper.interval)
            return
        except Exception:
            log.exception("sweep failed; next in %gs", self.sweeper.interval)
            return
        log_sweep(result)


def log_sweep(result: SweepResult) -> None:
    """One log line per task a sweep marked, re-queued, gave up on or failed to write
    (task ids and reason codes only, never a message)."""
    for task_id in result.suspected:
        log.info("task %s: message neither queued nor in flight; checking again", task_id)
    for task_id in result.requeued:
        log.warning(
            "task %s: message lost by the broker before any worker took it; re-queued", task_id
        )
    for task_id in result.abandoned:
        log.error("task %s: message lost %d times; no longer re-queued", task_id, MAX_REQUEUES)
    for task_id, reason in result.failed:
        log.error(
            "task %s: lost message not re-queued (%s); the next sweep retries", task_id, reason
        )


class SweeperStep(bootsteps.StartStopStep):
    """Starts the sweeper in the worker's main process, once the pool has forked."""

    label = "Sweeper"
    requires = ("celery.worker.components:Pool",)

    def start(self, parent: Any) -> None:
        service = getattr(parent.app, "taskgate_sweeper", None)
        if isinstance(service, SweeperService):
            service.start()

    def stop(self, parent: Any) -> None:
        service = getattr(parent.app, "taskgate_sweeper", None)
        if isinstance(service, SweeperService):
            service.stop()

    def terminate(self, parent: Any) -> None:
        self.stop(parent)


def install(app: Celery, settings: WorkerSettings, runtime: WorkerRuntime) -> None:
    """Add the sweeper to ``app``'s worker; refuse a kombu layout it cannot see into."""
    options = app.conf.broker_transport_options or {}
    unacked = options.get("unacked_key", Channel.unacked_key)
    index = options.get("unacked_index_key", Channel.unacked_index_key)
    if (unacked, index) != (KOMBU_UNACKED, KOMBU_UNACKED_INDEX) or options.get("global_keyprefix"):
        # Looking in the wrong hash would take every message in flight for lost; a task's
        # success commit acknowledges its delivery in both keys (workers.celery_ext.request).
        raise ConfigError(
            "broker_transport_options",
            f"taskgate expects kombu's unacked keys at {KOMBU_UNACKED!r} and"
            f" {KOMBU_UNACKED_INDEX!r}, unprefixed",
            "keep kombu's default unacked_key, unacked_index_key and no global_keyprefix",
        )
    app.taskgate_sweeper = SweeperService(settings, runtime)  # type: ignore[attr-defined]
    app.steps["worker"].add(SweeperStep)
