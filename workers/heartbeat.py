"""Worker heartbeats: each worker instance says it is alive, every few seconds, in Redis.

Why: readiness (``/readyz``) must not depend on a task that queues behind real work: under
a backlog such a ping waits for every task ahead of it, and a load balancer would pull the
gateways exactly under load. A heartbeat is written beside the queue, not through it.

How: :class:`HeartbeatWriter` runs a daemon thread in the worker's main process that, every
``TASKGATE_HEARTBEAT_INTERVAL`` seconds, scores this instance's id in the sorted set
``tg:workers`` with the current time (``ZADD``; in the same round trip it drops members
silent for :data:`PRUNE_AFTER_LAPSES` lapses, the traces of killed workers, and says how
many tasks the instance is running: ``tg:worker-active:{id}``, expiring, for ``/metrics``).
One beat per interval per worker, nothing per task. :class:`HeartbeatStep` starts it once
the pool has forked and removes the member on warm shutdown once the running tasks have
finished, so a stopped worker is gone at once; a killed one ages out after
``TASKGATE_HEARTBEAT_LAPSE`` (``workers.contract.heartbeat``).

After each beat the same thread tends the deliveries in flight (``workers.liveness``): it
renews this worker's own (a long run is never handed out again while its worker lives)
and reclaims at once those of workers whose heartbeat lapsed.

A failed beat (Redis unreachable) is logged and tried again at the next interval; it never
stops the thread or the worker. The member is an id (``{hostname}:{pid}``), nothing more.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from celery import Celery, bootsteps, signals
from celery.worker import state as worker_state

from security.audit.actions import AuditAction
from workers.celery_ext.transport import TOKENS
from workers.contract.heartbeat import WORKERS, worker_id
from workers.contract.keys import worker_active_key
from workers.execution.runtime import WorkerRuntime
from workers.liveness import Liveness, Reclaimed
from workers.settings import WorkerSettings

__all__ = ["PRUNE_AFTER_LAPSES", "HeartbeatStep", "HeartbeatWriter", "install"]

log = logging.getLogger("taskgate.worker")

# Members older than this many lapses are removed by any live worker's beat: long past
# counting, kept a while so a reader with a longer lapse than the writer still sees them.
PRUNE_AFTER_LAPSES = 4


class HeartbeatWriter:
    """Beats for one worker instance on a daemon thread; :meth:`stop` removes its member."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        interval: float,
        lapse: float,
        member: str | None = None,
        clock: Callable[[], float] = time.time,
        active: Callable[[], int] | None = None,
        liveness: Liveness | None = None,
    ) -> None:
        if not 0 < interval < lapse:
            raise ValueError("the heartbeat interval must be positive and below the lapse")
        self.interval = interval
        self.lapse = lapse
        self.member = member if member is not None else worker_id()
        self._client = client
        self._clock = clock
        self._active = active  # tasks running now (``celery_worker_tasks_active``)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.liveness = liveness

    def beat(self) -> bool:
        """One beat (and the prune of long-gone members); False if Redis did not take it."""
        now = self._clock()
        try:
            with self._client.pipeline(transaction=False) as pipe:
                pipe.zadd(WORKERS, {self.member: now})
                pipe.zremrangebyscore(WORKERS, "-inf", now - PRUNE_AFTER_LAPSES * self.lapse)
                if self._active is not None:
                    pipe.set(
                        worker_active_key(self.member),
                        str(self._active()),
                        ex=max(1, int(PRUNE_AFTER_LAPSES * self.lapse)),
                    )
                pipe.execute()
        except (redis.RedisError, OSError) as exc:
            log.warning("heartbeat failed (%s); next in %gs", type(exc).__name__, self.interval)
            return False
        if self.liveness is not None:
            try:
                self.liveness.tend(now)
            except (redis.RedisError, OSError) as exc:
                log.warning("tending deliveries failed (%s)", type(exc).__name__)
            except Exception:  # never stop the heartbeat
                log.exception("tending deliveries failed")
        return True

    def start(self) -> None:
        """Beat now, then every interval until :meth:`stop`."""
        if self.running():
            return
        self._stop.clear()
        self.beat()
        self._thread = threading.Thread(target=self._run, name="taskgate-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop beating and remove this instance's member (best effort: it ages out anyway)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        try:
            self._client.zrem(WORKERS, self.member)
            if self._active is not None:
                self._client.delete(worker_active_key(self.member))
        except (redis.RedisError, OSError) as exc:
            log.warning("could not remove the heartbeat (%s); it lapses", type(exc).__name__)

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()


class HeartbeatStep(bootsteps.StartStopStep):
    """Starts the heartbeat in the worker's main process, once the pool has forked."""

    label = "Heartbeat"
    requires = ("celery.worker.components:Pool",)

    def start(self, parent: Any) -> None:
        settings = getattr(parent.app, "taskgate_heartbeat_settings", None)
        if not isinstance(settings, WorkerSettings):
            return
        client = settings.redis.client(socket_timeout=5, socket_connect_timeout=5)
        runtime = getattr(parent.app, "taskgate_runtime", None)

        def audit(reclaimed: Reclaimed) -> None:
            if isinstance(runtime, WorkerRuntime) and reclaimed.task_id is not None:
                try:
                    runtime.audit(
                        AuditAction.TASK_RECLAIMED,
                        target=reclaimed.task_id,
                        outcome="ok",
                        reason=(
                            "its worker's heartbeat lapsed; re-queued"
                            if reclaimed.holder != member
                            else "let go of here (an earlier process, or Redis unreachable);"
                            " re-queued"
                        ),
                    )
                except Exception:  # the reclaim stands; the log line records it
                    log.exception("could not audit the reclaim of %s", reclaimed.task_id)

        member = TOKENS.member  # the worker id its deliveries' tokens name
        liveness = Liveness(client, tokens=TOKENS, lapse=settings.heartbeat_lapse, on_reclaim=audit)
        writer = HeartbeatWriter(
            client,
            interval=settings.heartbeat_interval,
            lapse=settings.heartbeat_lapse,
            active=lambda: len(worker_state.active_requests),
            member=member,
            liveness=liveness,
        )
        parent.taskgate_heartbeat = writer
        writer.start()

        def leave(sender: Any = None, **_: Any) -> None:
            if sender is parent:
                self._leave(parent)

        parent.taskgate_leave = leave  # the signal holds it weakly: kept alive here
        signals.worker_shutdown.connect(leave)

    def stop(self, parent: Any) -> None:
        """Warm shutdown: keep beating - and renewing - while the running tasks finish.

        Celery stops this step before the pool, which then waits for its tasks; leaving
        now would have live workers reclaim deliveries that are about to complete here.
        The member goes at ``worker_shutdown``, sent once the pool has drained.
        """

    def terminate(self, parent: Any) -> None:
        self._leave(parent)  # cold shutdown: running tasks are cut off; hand them back

    @staticmethod
    def _leave(parent: Any) -> None:
        writer = getattr(parent, "taskgate_heartbeat", None)
        if isinstance(writer, HeartbeatWriter):
            parent.taskgate_heartbeat = None
            writer.stop()


def install(app: Celery, settings: WorkerSettings) -> None:
    """Add the heartbeat to ``app``'s worker."""
    app.taskgate_heartbeat_settings = settings  # type: ignore[attr-defined]
    app.steps["worker"].add(HeartbeatStep)
