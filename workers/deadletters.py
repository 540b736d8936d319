"""The dead-letter store: where a task goes after its last attempt, still sealed.

``tg:dlq``        sorted set of task ids by the time they were dead-lettered
``tg:dlq:{id}``   hash: name, queue, owner, attempts, reason (exception type only),
                  dead_at, replays, envelope (the gateway's sealed message, base64),
                  vault_keys (where the task's sealed secrets are)

Nothing readable of the payload is stored: the envelope is ciphertext and the reason
is the exception's type. The secrets behind the task's references are kept while it is
dead-lettered (a requeue needs them) and deleted when it is purged.

A requeue deletes the dead letter; the count of replays lives on in the task record
(``tg:task:{id}`` field ``replays``), and a task dead-lettered again takes it from there,
so the replay cap holds across requeues.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import redis

from workers.contract.keys import DLQ_INDEX, dlq_key
from workers.wire import task_key

__all__ = ["DLQ_INDEX", "dead_letter", "dlq_key"]

DLQ_RETENTION = 7 * 86_400


def dead_letter(
    client: redis.Redis,
    *,
    task_id: str,
    name: str,
    queue: str,
    owner: str,
    envelope: bytes,
    attempts: int,
    reason: str,
    vault_keys: list[str],
    now: float | None = None,
) -> None:
    """Store the sealed message and a redacted reason; keep its secrets for a requeue."""
    moment = now or time.time()
    key = dlq_key(task_id)
    replays = client.hget(task_key(task_id), "replays")
    fields: dict[Any, Any] = {
        "name": name,
        "queue": queue,
        "owner": owner,
        "attempts": str(attempts),
        "reason": reason[:200],
        "dead_at": f"{moment:.6f}",
        "envelope": base64.b64encode(envelope).decode(),
        "vault_keys": " ".join(vault_keys),
        "replays": replays if isinstance(replays, bytes | str) else "0",
    }
    with client.pipeline(transaction=True) as pipe:
        pipe.hset(key, mapping=fields)
        pipe.expire(key, DLQ_RETENTION)
        pipe.zadd(DLQ_INDEX, {task_id: moment})
        for vault_key in vault_keys:
            pipe.expire(vault_key, DLQ_RETENTION)
        pipe.execute()
