"""Put Celery (protocol 2) messages on a Redis queue without kombu's publish path.

kombu's client-side publish costs far more than Redis does (a binding lookup per
message and a blocking client); the gateway instead writes exactly what kombu would,
with ``LPUSH`` on a pipeline it shares with the other writes of a submission. A real
Celery worker consumes these messages; integration tests prove it.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import uuid
from dataclasses import dataclass
from typing import Any

__all__ = ["OutgoingTask", "encode_message", "result_key"]

_ORIGIN = f"gateway@{socket.gethostname()}:{os.getpid()}"


def result_key(task_id: str) -> str:
    """The Redis key where Celery's Redis backend stores a task's result."""
    return f"celery-task-meta-{task_id}"


@dataclass(frozen=True)
class OutgoingTask:
    """One task message: routing metadata in clear, ``body`` already encoded."""

    task_id: str
    name: str
    body: bytes
    content_type: str
    queue: str
    soft_time_limit: float | None = None
    time_limit: float | None = None
    expires: str | None = None


def encode_message(task: OutgoingTask) -> bytes:
    """The JSON document kombu's Redis transport stores in the queue list.

    ``argsrepr``/``kwargsrepr`` are fixed placeholders: the payload never appears in
    headers, events, logs or Flower.
    """
    headers: dict[str, Any] = {
        "lang": "py",
        "task": task.name,
        "id": task.task_id,
        "shadow": None,
        "eta": None,
        "expires": task.expires,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [task.time_limit, task.soft_time_limit],
        "root_id": task.task_id,
        "parent_id": None,
        "argsrepr": "(sealed)",
        "kwargsrepr": "(sealed)",
        "origin": _ORIGIN,
        "ignore_result": False,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    message = {
        "body": base64.b64encode(task.body).decode("ascii"),
        "content-encoding": "binary" if task.content_type != "application/json" else "utf-8",
        "content-type": task.content_type,
        "headers": headers,
        "properties": {
            "correlation_id": task.task_id,
            "reply_to": "",
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": task.queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return json.dumps(message, separators=(",", ":")).encode()
