"""The wire contract between gateway and workers: content types and bindings.

Dependency-free so the gateway can import it without Celery or kombu.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_QUEUE",
    "PING_TASK",
    "RESULT_BINDING",
    "RESULT_CONTENT_TYPE",
    "TASK_CONTENT_TYPE",
]

TASK_CONTENT_TYPE = "application/x-taskgate-sealed"
RESULT_CONTENT_TYPE = "application/x-taskgate-sealed-result"
RESULT_BINDING = "celery.result"  # the "task name" a result envelope is bound to
DEFAULT_QUEUE = "taskgate"
PING_TASK = "system.ping"
