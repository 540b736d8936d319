"""Put Celery (protocol 2) messages on a Redis queue without kombu's publish path.

kombu's client-side publish costs far more than Redis does (a binding lookup per
message and a blocking client); the gateway instead writes exactly what kombu would, and
the audit append script pushes it with the other writes of a submission or a requeue
(``workers.contract.enqueue``). A real Celery worker consumes these messages; integration
tests prove it.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import socket
import uuid
from dataclasses import dataclass
from typing import Any

from workers.contract.keys import result_key
from workers.contract.wire import GATEWAY_COPY, REQUEST_ID_HEADER

__all__ = ["OutgoingTask", "encode_message", "result_key"]

_ORIGIN = f"gateway@{socket.gethostname()}:{os.getpid()}"


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
    # The gateway keeps a copy of this message (``tg:msg:{id}``) until a worker's start
    # gate takes the task: the worker's gate, not its consumer, then records the delivery
    # as in flight (``workers.celery_ext.transport``). Set only where the copy is written.
    copied: bool = False
    # The gateway request that submitted it (``X-Request-ID``): a header, so the worker's
    # log events of this task name the same id (``workers.lifecycle_log``).
    request_id: str | None = None


def encode_message(task: OutgoingTask) -> bytes:
    """The JSON document kombu's Redis transport stores in the queue list.

    ``argsrepr``/``kwargsrepr`` are fixed placeholders: the payload never appears in
    headers, events, logs or Flower. The document is the same for every message of one
    task declaration but for the task id, body, request id and delivery tag: those are
    spliced into a cached template (a UUID, base64, ``[A-Za-z0-9._:-]`` and a UUID:
    nothing to escape).
    """
    request_id = task.request_id or ""
    if not _UUID.fullmatch(task.task_id) or not (
        not request_id or _REQUEST_ID.fullmatch(request_id)
    ):
        return _encode(task, task.task_id, _b64(task.body), str(uuid.uuid4()))
    parts, markers = _template(
        task.name,
        task.content_type,
        task.queue,
        time_limit=task.time_limit,
        soft_time_limit=task.soft_time_limit,
        expires=task.expires,
        copied=task.copied,
        with_request_id=bool(request_id),
    )
    tid = task.task_id.encode()
    values = {
        _BODY: _b64(task.body).encode(),
        _TID: tid,
        _RID: request_id.encode(),
        _TAG: str(uuid.uuid4()).encode(),
    }
    out = [parts[0]]
    for marker, part in zip(markers, parts[1:], strict=True):
        out += (values[marker], part)
    return b"".join(out)


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_BODY, _TID, _TAG = "@@body@@", "@@00000000-0000-0000-0000-000000000000@@", "@@tag@@"
_RID = "@@rid@@"


def _b64(body: bytes) -> str:
    return base64.b64encode(body).decode("ascii")


@functools.lru_cache(maxsize=256)
def _template(
    name: str,
    content_type: str,
    queue: str,
    *,
    time_limit: float | None,
    soft_time_limit: float | None,
    expires: str | None,
    copied: bool,
    with_request_id: bool,
) -> tuple[tuple[bytes, ...], tuple[str, ...]]:
    """The message split at the markers where the variable fields go, and the markers."""
    task = OutgoingTask(
        _TID, name, b"", content_type, queue, soft_time_limit, time_limit, expires, copied,
        _RID if with_request_id else None,
    )  # fmt: skip
    text = _encode(task, _TID, _BODY, _TAG).decode()
    split = "|".join(re.escape(m) for m in (_BODY, _TID, _TAG, _RID))
    pieces = re.split(f"({split})", text)
    markers = tuple(pieces[1::2])
    expected = [_BODY, _TID, _TID, *([_RID] if with_request_id else []), _TID, _TAG]
    if list(markers) != expected:  # pragma: no cover - layout below changed
        raise RuntimeError(f"unexpected message layout: {markers}")
    return tuple(piece.encode() for piece in pieces[0::2]), markers


def _encode(task: OutgoingTask, task_id: str, body: str, tag: str) -> bytes:
    headers: dict[str, Any] = {
        "lang": "py",
        "task": task.name,
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": task.expires,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [task.time_limit, task.soft_time_limit],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": "(sealed)",
        "kwargsrepr": "(sealed)",
        "origin": _ORIGIN,
        "ignore_result": False,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    if task.request_id:
        headers[REQUEST_ID_HEADER] = task.request_id
    properties: dict[str, Any] = {
        "correlation_id": task_id,
        "reply_to": "",
        "delivery_mode": 2,
        "delivery_info": {"exchange": "", "routing_key": task.queue},
        "priority": 0,
        "body_encoding": "base64",
        "delivery_tag": tag,
    }
    if task.copied:
        properties[GATEWAY_COPY] = True
    message = {
        "body": body,
        "content-encoding": "binary" if task.content_type != "application/json" else "utf-8",
        "content-type": task.content_type,
        "headers": headers,
        "properties": properties,
    }
    return json.dumps(message, separators=(",", ":")).encode()
