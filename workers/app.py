"""The Celery app, built from settings by :func:`create_celery` (never at import time).

TLS-only broker and result backend, an ``accept_content`` allow-list without pickle,
late acks with reject-on-worker-lost and prefetch 1 so a killed worker loses nothing,
a visibility timeout above the longest run, no extended results, task events only when
``TASKGATE_TASK_EVENTS`` asks (placeholders instead of values), and no remote control
(anyone who can write to Redis could otherwise command the workers).
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.app import trace

from security.keystore import KeyRing
from workers import lifecycle_log
from workers.contract.catalogue import Catalogue, default_catalogue, load_task_modules
from workers.contract.wire import DEFAULT_QUEUE
from workers.execution.cancel import cancel_watcher
from workers.execution.registration import register_catalogue
from workers.execution.runtime import WorkerRuntime
from workers.heartbeat import install as install_heartbeat
from workers.metrics import WorkerMetrics
from workers.metrics import install as install_metrics
from workers.sealed import (
    RESULT_CONTENT_TYPE,
    RESULT_SERIALIZER,
    TASK_CONTENT_TYPE,
    TASK_SERIALIZER,
    register_serializers,
)
from workers.settings import WorkerSettings
from workers.sweeper import install as install_sweeper

__all__ = ["ACCEPT_CONTENT", "DEFAULT_QUEUE", "RESULT_ACCEPT_CONTENT", "create_celery"]

# The only content types a worker will deserialize: our sealed envelopes. Never pickle
# (CVE-2021-23727), not even JSON: an unsealed message is refused before any task code.
ACCEPT_CONTENT: list[str] = [TASK_CONTENT_TYPE]
RESULT_ACCEPT_CONTENT: list[str] = [RESULT_CONTENT_TYPE]


def celery_config(settings: WorkerSettings) -> dict[str, Any]:
    """The Celery configuration for ``settings`` (separate so tests can inspect it)."""
    ssl_options = settings.redis.celery_ssl()
    return {
        "broker_url": settings.redis_url,
        # Celery's Redis backend, with Redis verified against our CA alone
        # (workers.celery_ext.backend).
        "result_backend": f"workers.celery_ext.backend:PinnedRedisBackend+{settings.redis_url}",
        "broker_use_ssl": ssl_options,
        "redis_backend_use_ssl": ssl_options,
        # The worker's Redis ACL user, outside the URLs (Celery prints those).
        **settings.redis.celery_credentials(),
        "broker_connection_retry_on_startup": True,
        # kombu's Redis transport, except that an ack that cannot reach Redis frees its
        # prefetch slot (otherwise a Redis restart can leave the consumer idle for good).
        "broker_transport": "workers.celery_ext.transport:Transport",
        "broker_transport_options": {
            "visibility_timeout": settings.visibility_timeout,
            # Sweep for messages past the visibility timeout every 10 s, not every 100 s
            # (kombu scans only on every 10th 10-second tick by default).
            "unacked_restore_throttle": 1,
            "socket_timeout": 10,
            "socket_connect_timeout": 5,
            "health_check_interval": 25,
        },
        "result_backend_transport_options": {"retry_policy": {"timeout": 5.0}},
        "redis_socket_timeout": 10,
        "redis_socket_connect_timeout": 5,
        "task_serializer": TASK_SERIALIZER,
        "result_serializer": RESULT_SERIALIZER,
        "accept_content": list(ACCEPT_CONTENT),
        "result_accept_content": list(RESULT_ACCEPT_CONTENT),
        "event_serializer": "json",
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        # False: with Redis as broker *and* backend, Celery's cancel path fails to record
        # the cancellation while Redis is down, then treats the killed job as revoked and
        # acknowledges it once Redis is back - the task is lost. Left running, a task is
        # acknowledged when it ends (or redelivered after the visibility timeout).
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "task_time_limit": settings.task_time_limit,
        "task_soft_time_limit": settings.task_soft_time_limit,
        # False: storing STARTED happens before the task body, outside it; if Redis is
        # down then, Celery fails the task and acknowledges the message once Redis is back
        # (lost). The task record (tg:task:{id}) already says when it started.
        "task_track_started": False,
        "task_default_queue": DEFAULT_QUEUE,
        "task_default_exchange": DEFAULT_QUEUE,
        "task_default_routing_key": DEFAULT_QUEUE,
        "result_extended": False,  # would copy args/kwargs into the result backend
        "result_expires": settings.result_ttl,
        # Events carry placeholders only (workers.celery_ext.request.SealedRequest.send_event).
        "worker_send_task_events": settings.task_events,
        "task_send_sent_event": False,
        "worker_enable_remote_control": False,
        "worker_hijack_root_logger": True,
        "worker_redirect_stdouts": False,
        "worker_consumer": "workers.celery_ext.consumer:AuditingConsumer",
        # Celery's prefork pool, but a result or job half-way through its pipe survives
        # the consumer's reconnect after a broker outage (workers.celery_ext.pool).
        "worker_pool": "workers.celery_ext.pool:TaskPool",
        "enable_utc": True,
        "timezone": "UTC",
    }


def create_celery(
    settings: WorkerSettings,
    *,
    keys: KeyRing | None = None,
    catalogue: Catalogue | None = None,
) -> Celery:
    """Build the Celery app for ``settings``: sealed serializers, built-in and declared tasks.

    Keys load with the worker role: broker, vault and audit keys and only the *public*
    half of the gateway signing key, so a worker can verify work but never originate it.
    """
    from workers import system

    # Celery logs every return value at INFO ("succeeded in 0.01s: {...}"); results are
    # sealed at rest, so they must not be readable in the worker log either.
    trace.LOG_SUCCESS = "Task %(name)s[%(id)s] succeeded in %(runtime)ss"
    ring = keys if keys is not None else settings.key_ring("worker")
    register_serializers(ring, result_ttl=settings.result_ttl)
    load_task_modules(settings.task_modules)
    tasks = catalogue if catalogue is not None else default_catalogue
    app = Celery("taskgate", set_as_current=False)
    app.conf.update(celery_config(settings))
    app.taskgate_runtime = WorkerRuntime(  # type: ignore[attr-defined]
        keys=ring,
        redis_tls=settings.redis,
        catalogue=tasks,
        record_ttl=settings.result_ttl + settings.max_retry_delay * 10,
        max_runs=settings.max_interrupted_runs,
        metrics=WorkerMetrics(settings.redis, interval=settings.metrics_flush_interval),
    )
    install_metrics(app, app.taskgate_runtime.metrics)  # type: ignore[attr-defined]
    system.register(app)
    register_catalogue(app, tasks)
    lifecycle_log.install()  # one log event per step of a task's life
    # Stops running cancellable tasks that were cancelled (workers/execution/cancel.py).
    app.steps["worker"].add(cancel_watcher(settings.cancel_check_interval))
    install_sweeper(app, settings, app.taskgate_runtime)  # type: ignore[attr-defined]
    # Says this worker is alive, beside the queue: readiness reads it (workers/heartbeat.py).
    install_heartbeat(app, settings)
    return app
