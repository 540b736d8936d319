"""Built-in tasks every worker runs. ``system.ping`` proves a worker consumes (tests,
diagnostics); readiness uses heartbeats instead (``workers.heartbeat``)."""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from celery import Celery

from workers.contract.wire import PING_TASK
from workers.execution.task import SealedTask

__all__ = ["PING_TASK", "register"]


def register(app: Celery) -> None:
    """Register the built-in tasks on ``app``."""

    @app.task(
        name=PING_TASK,
        base=SealedTask,
        shared=False,  # this app's task only, not every Celery app the process builds
        ignore_result=False,
        acks_late=False,
        time_limit=10,
    )
    def ping() -> dict[str, Any]:
        """Prove a worker is consuming: who answered and when."""
        return {"pong": True, "worker": f"{socket.gethostname()}:{os.getpid()}", "at": time.time()}
