"""The sweeper: re-queue an accepted task whose broker message was lost before it started.

Why: a worker pops a message (``BRPOP``) and only then records it as in flight (``HSET
unacked <delivery tag>``) - for a gateway message its start gate does, from the copy below
(``workers.transport``). A Redis shutdown between the two persists the pop but never the
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
Each re-queue is audited (``task.requeued_lost``) and logged without payload.

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
from dataclasses import dataclass, field
from typing import Any

import redis
from celery import Celery, bootsteps

from security.audit_actions import AuditAction
from security.errors import ConfigError
from security.lua import lua_script
from workers.runtime import WorkerRuntime
from workers.settings import WorkerSettings
from workers.transport import Channel
from workers.wire import (
    GLOBAL_QUEUED,
    KOMBU_UNACKED,
    KOMBU_UNACKED_INDEX,
    SWEEP_LOCK,
    TASK_ID,
    message_copy_key,
    suspect_key,
    task_key,
)

__all__ = ["MAX_REQUEUES", "SweepResult", "Sweeper", "SweeperService", "SweeperStep", "install"]

log = logging.getLogger("taskgate.worker")

MAX_REQUEUES = 3  # a message lost more often than this is a fault to look at, not a race

# What it does, its KEYS and ARGV: the comment at the top of sweeper_lock.lua.
_LOCK = lua_script("workers", "sweeper_lock.lua")

# What it does, its KEYS and ARGV: the comment at the top of sweep.lua.
_SWEEP = lua_script("workers", "sweep.lua")


@dataclass
class SweepResult:
    """What one sweep did; ``swept`` is False when another worker holds the lock."""

    swept: bool
    requeued: list[str] = field(default_factory=list)
    suspected: list[str] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Sweeper:
    """The sweep itself: lock, then one script per batch of old queued tasks."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        interval: float,
        grace: float,
        batch: int = 200,
        holder: str | None = None,
    ) -> None:
        self.interval = interval
        self.grace = grace
        self.batch = batch
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
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
                requeued, suspected, abandoned = self._check(ids, moment)
                result.requeued += requeued
                result.suspected += suspected
                result.abandoned += abandoned
            if len(members) < self.batch:
                return result
            offset += len(members)  # ids that start meanwhile shift the rest: next sweep

    def _check(self, ids: list[str], now: float) -> list[list[str]]:
        keys = [KOMBU_UNACKED]
        for task_id in ids:
            keys += [task_key(task_id), message_copy_key(task_id), suspect_key(task_id)]
        mark_ttl_ms = int((self.grace + 4 * self.interval) * 1000)
        reply: Any = self._script(
            keys=keys, args=[f"{now:.6f}", self.grace, mark_ttl_ms, MAX_REQUEUES, *ids]
        )
        return [[_text(task_id) for task_id in part] for part in reply]


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
        for task_id in result.suspected:
            log.info("task %s: message neither queued nor in flight; checking again", task_id)
        for task_id in result.requeued:
            log.warning(
                "task %s: message lost by the broker before any worker took it; re-queued", task_id
            )
            self._audit(AuditAction.TASK_REQUEUED_LOST, task_id, "ok", "message missing; re-queued")
        for task_id in result.abandoned:
            log.error("task %s: message lost %d times; no longer re-queued", task_id, MAX_REQUEUES)
            self._audit(
                AuditAction.TASK_REQUEUE_ABANDONED, task_id, "error", f"lost {MAX_REQUEUES} times"
            )

    def _audit(self, action: AuditAction, task_id: str, outcome: Any, reason: str) -> None:
        try:
            self._runtime.audit(action, target=task_id, outcome=outcome, reason=reason)
        except Exception:  # the re-queue stands; the log line above records it
            log.exception("could not audit %s of %s", action, task_id)


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
        # success commit acknowledges its delivery in both keys (workers.request).
        raise ConfigError(
            "broker_transport_options",
            f"taskgate expects kombu's unacked keys at {KOMBU_UNACKED!r} and"
            f" {KOMBU_UNACKED_INDEX!r}, unprefixed",
            "keep kombu's default unacked_key, unacked_index_key and no global_keyprefix",
        )
    app.taskgate_sweeper = SweeperService(settings, runtime)  # type: ignore[attr-defined]
    app.steps["worker"].add(SweeperStep)
