"""Flower, set up so that it can show task names, states and timings and nothing else.

* Its Celery app connects to the TLS Redis as the ``monitor`` ACL user (PUB/SUB on the
  event channels, queue lengths; ``workers.contract.acl``) and holds no key: nothing it
  could read would open. The events it receives carry placeholders only
  (``workers.celery_ext.request.SealedRequest``).
* Every page and API route needs the basic-auth credential, ``/metrics`` and
  ``/healthcheck`` included (Flower serves those without login: CVE-2022-30034's class).
* Read-only: no revoke, terminate, rate limit or pool control from the UI; no sending
  of tasks (the API's apply routes need a task message only the gateway can seal anyway).
* No inspection and no wake-up: workers run without remote control (``workers.app``), so
  Flower's broadcasts to them (inspect, ``heartbeat`` on connect) could never be answered;
  they are not sent at all, and the ``monitor`` user may not publish.
* Served over HTTPS with the gateway's TLS profile (``security.tls.server_context``).
"""

from __future__ import annotations

import _thread
import asyncio
import collections
import logging
import time
from pathlib import Path
from typing import Any

from celery import Celery
from celery.events import EventReceiver
from flower.app import Flower
from flower.events import Events
from flower.options import options as flower_options
from flower.urls import settings as flower_settings
from flower.views import monitor
from tornado import ioloop, web

from security.tls import RedisTLS, server_context
from workers.contract.keys import DEFAULT_QUEUE

__all__ = ["TaskgateFlower", "build_flower", "monitor_celery"]

_log = logging.getLogger("taskgate.flower")


def monitor_celery(redis: RedisTLS) -> Celery:
    """A Celery app that only listens: the broker over mTLS as the ``monitor`` user."""
    app = Celery("taskgate-flower", set_as_current=False)
    app.conf.update(
        broker_url=redis.url,
        broker_use_ssl=redis.celery_ssl(),
        broker_connection_retry_on_startup=True,
        event_serializer="json",
        accept_content=["json"],  # events only; no task message is ever decoded here
        worker_enable_remote_control=False,
        task_default_queue=DEFAULT_QUEUE,  # the queue Flower's broker page measures
        **{k: v for k, v in redis.celery_credentials().items() if k.startswith("broker_")},
    )
    return app


class _AuthenticatedMetrics(monitor.Metrics):  # type: ignore[misc]  # flower: no hints
    @web.authenticated
    async def get(self) -> None:
        await super().get()


class _AuthenticatedHealthcheck(monitor.Healthcheck):  # type: ignore[misc]
    @web.authenticated
    async def get(self) -> None:
        await super().get()


class _NoInspection:
    """Flower's inspector, minus the broadcasts: workers hold no remote control to answer."""

    inspect_methods = ("stats", "active_queues", "registered", "conf")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.workers: dict[str, dict[str, Any]] = collections.defaultdict(dict)
        self._loop = loop  # Flower asks once before its loop runs

    def inspect(self, workername: str | None = None) -> asyncio.Future[None]:  # noqa: ARG002
        future: asyncio.Future[None] = self._loop.create_future()
        future.set_result(None)
        return future


class _ListeningEvents(Events):  # type: ignore[misc]  # flower: no hints
    """Flower's event thread, capturing without first broadcasting a wake-up."""

    def run(self) -> None:
        try_interval = 1
        while True:
            try:
                try_interval = min(try_interval * 2, 30)
                with self.capp.connection() as conn:
                    receiver = EventReceiver(conn, handlers={"*": self.on_event}, app=self.capp)
                    try_interval = 1
                    receiver.capture(limit=None, timeout=None, wakeup=False)
            except (KeyboardInterrupt, SystemExit):
                _thread.interrupt_main()
                return
            except Exception as exc:  # noqa: BLE001 - Flower's own policy: log, retry
                _log.error(
                    "event capture failed (%s); again in %ss", type(exc).__name__, try_interval
                )
                time.sleep(try_interval)


class TaskgateFlower(Flower):  # type: ignore[misc]  # flower ships no type hints
    """Flower with the routes it leaves open put behind login, and no inspection."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.inspector = _NoInspection(self.io_loop.asyncio_loop)
        swap = {
            monitor.Metrics: _AuthenticatedMetrics,
            monitor.Healthcheck: _AuthenticatedHealthcheck,
        }
        for rule in self.wildcard_router.rules:
            if rule.target in swap:
                rule.target = swap[rule.target]


def build_flower(
    capp: Celery,
    *,
    host: str,
    port: int,
    credential: str,
    tls_cert: Path,
    tls_key: Path,
) -> TaskgateFlower:
    """The Flower application (not started) for ``capp`` behind ``credential``
    (``user:password``), served over HTTPS on ``host:port``."""
    options: Any = flower_options
    options.address = host
    options.port = port
    options.basic_auth = [credential]
    options.auth = ""
    options.read_only = True
    options.enable_events = False  # the workers' settings decide (TASKGATE_TASK_EVENTS)
    options.persistent = False  # no event history on disk
    options.purge_offline_workers = 300
    options.url_prefix = ""
    settings = dict(flower_settings)
    settings["debug"] = False
    settings["ssl_options"] = server_context(tls_cert, tls_key)
    events = _ListeningEvents(
        capp,
        db=options.db,
        persistent=False,
        state_save_interval=0,
        enable_events=False,
        io_loop=ioloop.IOLoop.current(),
        max_workers_in_memory=options.max_workers,
        max_tasks_in_memory=options.max_tasks,
    )
    return TaskgateFlower(capp=capp, options=options, events=events, **settings)
