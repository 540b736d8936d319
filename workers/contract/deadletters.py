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

import redis

from security.lua import lua_script
from workers.contract.keys import DLQ_INDEX, INFLIGHT, dlq_key
from workers.contract.wire import task_key

__all__ = ["DLQ_INDEX", "dead_letter", "dlq_key"]

DLQ_RETENTION = 7 * 86_400
_DEAD_LETTER = lua_script("workers.contract", "dead_letter.lua")


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
    fence: tuple[str, str] | None = None,
) -> bool:
    """Store the sealed message and a redacted reason; keep its secrets for a requeue.

    With a ``fence`` (delivery tag, ownership token): only while that token holds the
    delivery, checked in the same script as the writes; False, writing nothing, if not."""
    moment = now or time.time()
    replays = client.hget(task_key(task_id), "replays")
    fields = {
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
    tag, token = fence if fence is not None else ("", "")
    written = client.register_script(_DEAD_LETTER)(
        keys=[dlq_key(task_id), DLQ_INDEX, INFLIGHT, *vault_keys],
        args=[
            str(DLQ_RETENTION),
            f"{moment:.6f}",
            task_id,
            tag,
            token,
            *(item for pair in fields.items() for item in pair),
        ],
    )
    return bool(int(written))
