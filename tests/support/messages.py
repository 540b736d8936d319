"""Build and watch broker messages the way the gateway does, for worker-level tests."""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path
from typing import Any

import redis
from kombu.message import Message

from gateway.submission.codec import SealedCodec
from gateway.submission.publisher import OutgoingTask, encode_message, result_key
from security.audit import AuditEntry, iter_records
from security.keystore import KeyRing
from security.vault import swap_secrets, write_entries
from tests.support.replies import as_bytes
from workers.contract.wire import DEFAULT_QUEUE


def submit(
    client: redis.Redis,
    keys: KeyRing,
    name: str,
    payload: dict[str, Any],
    *,
    secret_fields: tuple[str, ...] = (),
    task_id: str | None = None,
) -> str:
    """Swap secrets, seal, sign and enqueue - the gateway's submission, without HTTP."""
    task_id = task_id or str(uuid.uuid4())
    swapped = swap_secrets(payload, secret_fields, task_id=task_id, keys=keys.vault)
    codec = SealedCodec(keys, ttl=600)
    body = codec.encode(task_id, name, [], {"payload": swapped.payload})
    message = OutgoingTask(task_id, name, body, codec.content_type, DEFAULT_QUEUE)
    with client.pipeline(transaction=False) as pipe:
        write_entries(pipe, swapped.entries, 600)
        pipe.lpush(DEFAULT_QUEUE, encode_message(message))
        pipe.execute()
    return task_id


def push_raw(client: redis.Redis, message: dict[str, Any]) -> None:
    """Push a hand-made kombu message document onto the queue."""
    client.lpush(DEFAULT_QUEUE, json.dumps(message))


def wait_result(
    client: redis.Redis, keys: KeyRing, task_id: str, timeout: float = 20
) -> dict[str, Any]:
    """Wait for the sealed result document of ``task_id`` and open it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = client.get(result_key(task_id))
        if raw is not None:
            doc = SealedCodec(keys, ttl=60).decode_result(task_id, as_bytes(raw))
            if doc.get("status") in {"SUCCESS", "FAILURE"}:
                return doc
        time.sleep(0.05)
    raise AssertionError(f"no result for {task_id} within {timeout}s")


def wait_audit(client: redis.Redis, target: str, action: str, timeout: float = 20) -> AuditEntry:
    """Wait for an audit record about ``target`` with ``action``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in iter_records(client):
            if entry.record.target == target and entry.record.action == action:
                return entry
        time.sleep(0.1)
    raise AssertionError(f"no {action} audit record for {target} within {timeout}s")


def ran(side_effects: Path, task_id: str) -> bool:
    """Whether the body of ``task_id`` ran (sample tasks leave a file)."""
    return (side_effects / task_id).exists()


def delivered(encoded: bytes) -> Message:
    """The kombu message a worker's consumer gets for ``encoded`` (a gateway document)."""
    doc = json.loads(encoded)
    return Message(
        body=base64.b64decode(doc["body"]),  # type: ignore[arg-type]  # stubs: str only
        content_type=doc["content-type"],
        content_encoding=doc["content-encoding"],
        headers=doc["headers"],
        properties=doc["properties"],
        delivery_info={"exchange": "", "routing_key": DEFAULT_QUEUE},
        delivery_tag=doc["properties"]["delivery_tag"],
    )
