"""Stopping a running task that was cancelled, without Celery remote control.

``DELETE /v1/tasks/{id}`` on a running task whose declaration says ``cancellable=True``
stores the revocation (``tg:revoked:task:{id}``) and sets the record's state to
``cancelling`` in one Lua script, and only if the record says ``started`` - so only once
a worker's start gate has run for it. Three pieces here finish the job:

* :class:`CancelWatcher`, a worker bootstep: a daemon thread in the worker's main process
  that, every ``TASKGATE_CANCEL_CHECK_INTERVAL`` seconds and only while a cancellable task
  runs, reads the records of the running cancellable tasks in one round trip (a
  pipeline). For each one in ``cancelling`` it asks the event loop (the main thread, where
  the pool's bookkeeping happens) to send SIGUSR1 to the pool process running it, once.
* The pool process side (:func:`task_starts`, :func:`interruptible`, :func:`task_ends`):
  SIGUSR1 is billiard's soft-time-limit signal; it raises ``SoftTimeLimitExceeded`` in
  the task body, which may clean up. Outside a cancellable task's body (its start gate,
  its final bookkeeping, Celery's own code around the task) the signal is held and
  dropped, so it never interrupts a Redis write half-way or lands in the next task.
* :func:`finish_unless_revoked`: a cancellable task that returns records ``succeeded``
  only if no revocation arrived first, atomically; otherwise ``revoked``.

The pool process is never killed, so no ``WorkerLostError``, no reject-on-worker-lost
requeue: the task ends as ``revoked`` and Celery acknowledges its message as for any
finished task (``workers.execution.task`` raises ``Ignore``). Celery's ``Request.terminate``
and ``pool.terminate_job`` are not used: the first acknowledges before the task has
cleaned up (and from this thread), the second marks the pool process as "job
terminated" for good, so a later real loss of that process would be acknowledged instead
of redelivered. Prefork pools only (``taskgate worker`` always uses one).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any, ClassVar, Final

import redis
from billiard.pool import soft_timeout_sighandler
from celery import bootsteps
from celery.concurrency.prefork import TaskPool as PreforkPool
from celery.exceptions import SoftTimeLimitExceeded
from celery.worker import state as worker_state

from security.lua import lua_script
from workers.contract.keys import INFLIGHT
from workers.contract.states import TaskState
from workers.contract.wire import done_key, revoked_key, task_key

if TYPE_CHECKING:
    from workers.execution.runtime import WorkerRuntime

__all__ = [
    "CANCEL_SIGNAL",
    "CancelWatcher",
    "NotHeldError",
    "cancel_watcher",
    "finish_unless_revoked",
    "interruptible",
    "task_ends",
    "task_starts",
]

log = logging.getLogger("taskgate.worker")

# billiard's soft time limit signal: inside the task it raises SoftTimeLimitExceeded.
CANCEL_SIGNAL = signal.SIGUSR1
# The record's started_at (written by the start gate) may precede the pool's accept time
# by this much and still count as this run's gate; older means an earlier delivery.
_GATE_SLACK = 1.0
_CANCELLING: Final = TaskState.CANCELLING.encode()  # the replies are bytes

# --- in the pool process ---------------------------------------------------------------


class _PoolSignals:
    """What SIGUSR1 does in this pool process right now."""

    installed = False
    hold = True  # hold (and later drop) the signal instead of raising
    pending = False


_state = _PoolSignals()


def _on_signal(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001
    if _state.hold:
        _state.pending = True
        return
    raise SoftTimeLimitExceeded()


def _install() -> None:
    # Only in a prefork pool process (billiard's handler in place), from its main thread.
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(CANCEL_SIGNAL) is not soft_timeout_sighandler:
        return
    signal.signal(CANCEL_SIGNAL, _on_signal)
    _state.installed = True


def task_starts(*, cancellable: bool) -> None:
    """First thing of every task call: a signal left from earlier is dropped; a cancellable
    task holds the signal until its body runs, any other task keeps billiard's behaviour."""
    if not _state.installed:
        _install()
    _state.pending = False
    _state.hold = cancellable


def task_ends() -> None:
    """Last thing of every task call: hold the signal until the next task starts."""
    _state.hold = True


@contextmanager
def interruptible() -> Iterator[None]:
    """The body of a cancellable task: SIGUSR1 raises ``SoftTimeLimitExceeded`` here, at
    once if it arrived while the task was starting."""
    _state.hold = False
    try:
        if _state.pending:
            _state.pending = False
            raise SoftTimeLimitExceeded()
        yield
    finally:
        _state.hold = True


_FINISH_UNLESS_REVOKED = lua_script("workers.execution", "finish_unless_revoked.lua")


def finish_unless_revoked(
    client: redis.Redis,
    task_id: str,
    *,
    ttl: int,
    delete: Sequence[str] = (),
    marker: tuple[str, str] | None = None,
    fence: tuple[str, str] | None = None,
) -> bool:
    """Record ``succeeded`` (and the completion record) unless the task was revoked, then
    ``revoked``; delete ``delete`` (its vault entries) either way. One round trip, atomic
    with the gateway's revocation script: whichever reaches Redis first wins.

    Like ``Lifecycle.finish`` for ``succeeded``, plus the revocation check. With a
    ``fence`` (delivery tag, ownership token) nothing is written unless that token still
    holds the delivery: :class:`NotHeldError` then.
    """
    script = client.register_script(_FINISH_UNLESS_REVOKED)
    bucket, field = marker if marker is not None else (task_key(task_id), "")
    tag, token = fence if fence is not None else ("", "")
    keys = [revoked_key(task_id), task_key(task_id), done_key(task_id), bucket, INFLIGHT]
    done = int(
        script(keys=[*keys, *delete], args=[f"{time.time():.6f}", str(ttl), field, tag, token])
    )
    if done == 2:
        raise NotHeldError(task_id)
    return bool(done)


class NotHeldError(Exception):
    """The run's delivery was reclaimed from this worker (``workers.execution.fencing``)."""


# --- in the worker's main process ------------------------------------------------------


def _cancellable(request: Any) -> bool:
    spec = getattr(request.task, "spec", None)
    return bool(getattr(spec, "cancellable", False))


class CancelWatcher(bootsteps.StartStopStep):
    """Stops running cancellable tasks whose record says ``cancelling`` (see the module)."""

    label = "cancel watcher"
    requires = ("celery.worker.components:Pool",)
    interval: ClassVar[float] = 0.5

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._signalled: set[str] = set()  # written on the event loop only
        self._worker: Any = None

    def start(self, parent: Any) -> None:
        if not isinstance(parent.pool, PreforkPool):
            log.warning("pool %s: running tasks cannot be cancelled", type(parent.pool).__name__)
            return
        runtime: WorkerRuntime | None = getattr(parent.app, "taskgate_runtime", None)
        if runtime is None:
            log.warning("no taskgate runtime: running tasks cannot be cancelled")
            return
        self._worker = parent
        self._thread = threading.Thread(
            target=self._run, args=(runtime,), name="taskgate-cancel-watcher", daemon=True
        )
        self._thread.start()

    def stop(self, parent: Any) -> None:  # noqa: ARG002
        self._stopping.set()

    def terminate(self, parent: Any) -> None:
        self.stop(parent)

    def _run(self, runtime: WorkerRuntime) -> None:
        client: redis.Redis | None = None
        failing = False
        while not self._stopping.wait(self.interval):
            try:
                running = self._running()
                if not running:
                    continue
                if client is None:
                    client = runtime.redis_tls.client(socket_timeout=5, socket_connect_timeout=5)
                doomed = self._cancelling(client, running)
                if doomed:
                    self._dispatch(doomed)
                failing = False
            except Exception:
                # Redis unreachable or anything else: keep watching; log once per streak.
                if not failing:
                    log.warning("cancel watcher: check failed; retrying", exc_info=True)
                failing = True

    def _running(self) -> list[Any]:
        """Requests running in a pool process for a cancellable task, not yet signalled."""
        # A plain dict copied in C (atomic under the GIL), unlike the active_requests
        # WeakSet, whose iteration from this thread could race the event loop.
        requests = tuple(worker_state.requests.values())
        signalled = self._signalled
        return [
            r
            for r in requests
            if r.time_start and r.worker_pid and r.id not in signalled and _cancellable(r)
        ]

    @staticmethod
    def _cancelling(client: redis.Redis, running: list[Any]) -> list[Any]:
        """Those whose record says ``cancelling`` since this run's start gate."""
        with client.pipeline(transaction=False) as pipe:
            for request in running:
                pipe.hmget(task_key(request.id), "state", "started_at")
            replies: list[Any] = pipe.execute()
        doomed = []
        for request, (state, started_at) in zip(running, replies, strict=True):
            if state != _CANCELLING or not started_at:
                continue
            # A record left "started" by an earlier delivery: this run has not passed its
            # gate yet, and the gate itself will find the revocation.
            if float(started_at) < float(request.time_start) - _GATE_SLACK:
                continue
            doomed.append(request)
        return doomed

    def _dispatch(self, doomed: list[Any]) -> None:
        hub = getattr(self._worker, "hub", None)
        if hub is not None:
            hub.call_soon(self._terminate, doomed)  # thread-safe; runs on the event loop
        else:  # pragma: no cover - the prefork pool always runs with the event loop
            self._terminate(doomed)

    def _terminate(self, doomed: list[Any]) -> None:
        """On the event loop: signal each request still running, once."""
        processes = set(self._worker.pool.info.get("processes") or ())
        active = worker_state.active_requests
        self._signalled.intersection_update(worker_state.requests)
        for seen in doomed:
            # Still this run, still in the pool process it was accepted by: the event loop
            # has not handled its result, so that process has not been given other work.
            request = worker_state.requests.get(seen.id)
            if request is None or request is not seen or request not in active:
                continue
            pid = int(request.worker_pid)
            if request.id in self._signalled or pid not in processes:
                continue
            try:
                os.kill(pid, CANCEL_SIGNAL)
            except ProcessLookupError:
                continue
            self._signalled.add(request.id)
            log.info("task %s[%s] cancelled while running: stopping it", request.name, request.id)


def cancel_watcher(interval: float) -> type[CancelWatcher]:
    """The watcher step checking every ``interval`` seconds (``app.steps['worker'].add``)."""

    class ConfiguredCancelWatcher(CancelWatcher):
        pass

    ConfiguredCancelWatcher.interval = interval
    return ConfiguredCancelWatcher
