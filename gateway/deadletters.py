"""Dead-letter operations for admins (HTTP and CLI): list, inspect, requeue, purge.

Requeue opens the sealed message with the gateway's keys and seals it again with a fresh
expiry - same task id and name, a fresh attempt budget - then publishes it; replays are
capped. Purge deletes the message and the task's secrets. Every operation is audited by
the caller.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio

from gateway.codec import SealedCodec
from gateway.publisher import OutgoingTask, encode_message
from security.keystore import KeyRing
from security.sealing import open_envelope
from security.vault import VAULT_PREFIX
from workers.deadletters import DLQ_INDEX, dlq_key
from workers.wire import (
    GLOBAL_QUEUED,
    TASK_ID,
    decode_record,
    message_copy_key,
    queued_key,
    task_key,
)

__all__ = ["MAX_REPLAYS", "DeadLetterError", "inspect", "list_dead", "purge", "requeue"]

MAX_REPLAYS = 5


class DeadLetterError(Exception):
    """A dead-letter operation that cannot proceed (``status`` is the HTTP status)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class DeadLetter:
    """The metadata of a dead-lettered task (never its payload)."""

    task_id: str
    name: str
    owner: str
    attempts: int
    reason: str
    dead_at: float
    replays: int

    def public(self) -> dict[str, Any]:
        return {
            "id": self.task_id,
            "task": self.name,
            "owner": self.owner,
            "attempts": self.attempts,
            "reason": self.reason,
            "dead_at": self.dead_at,
            "replays": self.replays,
        }


def _parse(task_id: str, record: dict[str, str]) -> DeadLetter:
    return DeadLetter(
        task_id=task_id,
        name=record.get("name", ""),
        owner=record.get("owner", ""),
        attempts=int(record.get("attempts", "0") or 0),
        reason=record.get("reason", ""),
        dead_at=float(record.get("dead_at", "0") or 0),
        replays=int(record.get("replays", "0") or 0),
    )


async def _load(client: redis.asyncio.Redis, task_id: str) -> dict[str, str]:
    if not TASK_ID.fullmatch(task_id):
        raise DeadLetterError(404, "no such dead letter")
    raw = await client.hgetall(dlq_key(task_id))
    if not raw:
        raise DeadLetterError(404, "no such dead letter")
    return decode_record(raw)


async def list_dead(
    client: redis.asyncio.Redis, *, limit: int = 50, before: float | None = None
) -> tuple[list[DeadLetter], float | None]:
    """Newest first, paged by the dead-letter time."""
    upper: float | str = f"({before}" if before is not None else "+inf"
    rows: list[Any] = await client.zrevrangebyscore(
        DLQ_INDEX, upper, "-inf", start=0, num=limit, withscores=True
    )
    async with client.pipeline(transaction=False) as pipe:
        for member, _ in rows:
            pipe.hgetall(dlq_key(member.decode() if isinstance(member, bytes) else member))
        records = await pipe.execute()
    items = []
    for (member, _), raw in zip(rows, records, strict=True):
        if raw:
            items.append(
                _parse(member.decode() if isinstance(member, bytes) else member, decode_record(raw))
            )
    return items, (rows[-1][1] if len(rows) == limit else None)


async def inspect(client: redis.asyncio.Redis, task_id: str) -> DeadLetter:
    return _parse(task_id, await _load(client, task_id))


async def requeue(
    client: redis.asyncio.Redis,
    keys: KeyRing,
    task_id: str,
    *,
    ttl: int,
    max_replays: int = MAX_REPLAYS,
) -> DeadLetter:
    """Seal the message again (fresh expiry) and publish it with a fresh attempt budget."""
    record = await _load(client, task_id)
    dead = _parse(task_id, record)
    if dead.replays >= max_replays:
        raise DeadLetterError(409, f"replayed {dead.replays} times already (cap {max_replays})")
    # The worker accepted this envelope when it dead-lettered it; open it as of then.
    opened = open_envelope(
        base64.b64decode(record["envelope"]),
        keys=keys.broker,
        verifiers=keys.signing,
        now=dead.dead_at,
    )
    opened.check_binding(task_id, dead.name)
    codec = SealedCodec(keys, ttl=ttl)
    body = codec.reseal(task_id, dead.name, opened.plaintext)
    queue = record.get("queue") or "taskgate"
    message = encode_message(
        OutgoingTask(task_id, dead.name, body, codec.content_type, queue, copied=True)
    )
    now = time.time()
    vault_keys = _vault_keys(record, task_id)
    async with client.pipeline(transaction=True) as pipe:
        pipe.hincrby(dlq_key(task_id), "replays", 1)
        pipe.zrem(DLQ_INDEX, task_id)
        pipe.delete(dlq_key(task_id))
        for vault_key in vault_keys:
            pipe.expire(vault_key, ttl)
        pipe.hset(task_key(task_id), mapping={"state": "queued", "attempts": "0", "error": ""})
        if dead.owner:
            pipe.zadd(queued_key(dead.owner), {task_id: now})
        pipe.zadd(GLOBAL_QUEUED, {task_id: now})
        pipe.hincrby(task_key(task_id), "replays", 1)
        # The sweeper's copy, as for a fresh submission: a replay lost by the broker
        # before a worker took it is re-queued too (workers.sweeper).
        pipe.set(message_copy_key(task_id), message, ex=ttl)
        pipe.lpush(queue, message)
        await pipe.execute()
    return DeadLetter(**{**dead.__dict__, "replays": dead.replays + 1})


async def purge(client: redis.asyncio.Redis, task_id: str) -> DeadLetter:
    """Delete the dead letter and the task's stored secrets."""
    record = await _load(client, task_id)
    dead = _parse(task_id, record)
    async with client.pipeline(transaction=True) as pipe:
        pipe.zrem(DLQ_INDEX, task_id)
        pipe.delete(dlq_key(task_id))
        for vault_key in _vault_keys(record, task_id):
            pipe.delete(vault_key)
        pipe.hset(task_key(task_id), mapping={"state": "failed", "error": f"{dead.reason}; purged"})
        await pipe.execute()
    return dead


def _vault_keys(record: dict[str, str], task_id: str) -> list[str]:
    """The task's vault keys named in its dead letter, only those: a worker writes the
    record, and must not get the gateway to expire or delete any other key."""
    prefix = f"{VAULT_PREFIX}{task_id}:"
    return [key for key in record.get("vault_keys", "").split() if key.startswith(prefix)]
