"""Dead-letter operations for admins (HTTP and CLI): list, inspect, requeue, purge.

Requeue opens the sealed message with the gateway's keys and seals it again with a fresh
expiry - same task id and name, a fresh attempt budget - then publishes it; replays are
capped. What it trusts is authenticated (see :func:`requeue`); the dead letter itself is
written by a worker. Purge deletes the message and the task's secrets. Every operation is
audited by the caller; a requeue's record is written in the same atomic call as the
requeue itself (``workers.contract.enqueue``).
"""

from __future__ import annotations

import base64
import contextlib
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio

from gateway.stores.task_records import Seal, seal_of, signed_fields, verify_task
from gateway.submission.codec import SealedCodec
from gateway.submission.publisher import OutgoingTask, encode_message
from security.audit import AuditRecord, Outcome, Write
from security.errors import StoredStateError, TaskgateError
from security.keystore import KeyRing
from security.sealing import Opened, open_envelope
from security.vault import VAULT_PREFIX
from workers.contract.deadletters import DLQ_INDEX, dlq_key
from workers.contract.enqueue import (
    AsyncCommit,
    Enqueue,
    NotEnqueuedError,
    aenqueue,
    undo_partial_enqueue,
)
from workers.contract.states import TaskState
from workers.contract.wire import (
    GLOBAL_QUEUED,
    TASK_ID,
    decode_record,
    queued_key,
    task_key,
)

__all__ = ["MAX_REPLAYS", "DeadLetterError", "inspect", "list_dead", "purge", "requeue"]

MAX_REPLAYS = 5


class DeadLetterError(Exception):
    """A dead-letter operation that cannot proceed (``status`` is the HTTP status): a
    refusal (``denied``), or a requeue Redis refused to write (``error``)."""

    def __init__(self, status: int, detail: str, outcome: Outcome = "denied") -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.outcome: Outcome = outcome  # what the caller's audit record of it says


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


async def _authenticated(
    client: redis.asyncio.Redis,
    keys: KeyRing,
    task_id: str,
    record: dict[str, str],
    max_replays: int,
) -> tuple[dict[str, str], Opened]:
    """The verified task record and the dead letter's opened envelope, if the envelope is
    the record's current seal and that seal ended dead-lettered; else DeadLetterError."""
    raw_task = await client.hgetall(task_key(task_id))
    task = decode_record(raw_task) if raw_task else {}
    try:
        verify_task(keys.state, task_id, task)
    except StoredStateError as exc:
        raise DeadLetterError(409, f"task record refused: {exc.record} {exc.reason}") from None
    seal = seal_of(task_id, task)
    if seal is None:
        raise DeadLetterError(409, "task record names no gateway seal")
    for name in ("name", "owner", "replays"):
        if record.get(name, "") != task[name]:
            raise DeadLetterError(
                409, f"dead letter metadata does not match the task record ({name})"
            )
    replays = int(task["replays"])
    if replays >= max_replays:
        raise DeadLetterError(409, f"replayed {replays} times already (cap {max_replays})")
    try:
        # Authentic if it opens as of its own issue time (the record's, MAC'd).
        opened = open_envelope(
            base64.b64decode(record.get("envelope", ""), validate=True),
            keys=keys.broker,
            verifiers=keys.signing,
            now=seal.iat,
        )
        opened.check_binding(task_id, task["name"])
    except (TaskgateError, ValueError) as exc:
        why = exc.reason if isinstance(exc, TaskgateError) else "not base64"
        raise DeadLetterError(409, f"dead letter envelope refused: {why}") from None
    if opened.iat != seal.iat or opened.exp != seal.exp:
        raise DeadLetterError(409, "dead letter envelope is not the task's current seal")
    marker = await client.hget(seal.bucket, seal.field)
    ended = marker.decode() if isinstance(marker, bytes) else marker
    if ended != TaskState.DEAD_LETTERED:
        raise DeadLetterError(
            409, f"the current seal did not end dead-lettered ({ended or 'no final marker'})"
        )
    return task, opened


async def requeue(
    client: redis.asyncio.Redis,
    keys: KeyRing,
    task_id: str,
    *,
    ttl: int,
    record: AuditRecord,
    commit: AsyncCommit,
    max_replays: int = MAX_REPLAYS,
) -> DeadLetter:
    """Seal the message again (fresh expiry) and queue it with a fresh attempt budget.

    Decided on authenticated data only: the task record's gateway fields (MAC'd: owner,
    name, current seal, replays), the dead letter's envelope (gateway-signed) which must be
    that current seal, and the seal's final marker (create-only), which must say
    ``dead_lettered``. The dead letter's own fields are written by a worker: they must
    agree with the record, and are never believed over it. A refusal says why (the caller
    audits it).

    Queued through the one enqueue path (``workers.contract.enqueue``): ``record`` (the
    caller's ``ok`` record of the requeue) is appended by ``commit`` in the same atomic
    call that writes the task record, the message's copy and the push. If the append fails
    (``AuditError``), nothing is written; if Redis refuses a write, the message was not
    pushed and the refusal is a :class:`DeadLetterError` with outcome ``error``.
    """
    dead_record = await _load(client, task_id)
    task, opened = await _authenticated(client, keys, task_id, dead_record, max_replays)
    replays = int(task["replays"])
    now = time.time()
    codec = SealedCodec(keys, ttl=ttl)
    body = codec.reseal(task_id, task["name"], opened.plaintext, now=now)
    fresh = Seal(task_id, now, now + codec.ttl)
    signed = signed_fields(
        keys.state,
        task_id,
        owner=task["owner"],
        name=task["name"],
        seal_iat=fresh.iat,
        seal_exp=fresh.exp,
        replays=replays + 1,
    )
    queue = dead_record.get("queue") or "taskgate"
    message = encode_message(
        OutgoingTask(task_id, task["name"], body, codec.content_type, queue, copied=True)
    )
    fields = {**signed, "state": TaskState.QUEUED, "attempts": "0", "error": ""}
    mapping = tuple(item for pair in fields.items() for item in pair)
    stamp, owner = repr(now), task["owner"]
    after = [
        Write("HSET", (task_key(task_id),), mapping),
        *([Write("ZADD", (queued_key(owner),), (stamp, task_id))] if owner else []),
        Write("ZADD", (GLOBAL_QUEUED,), (stamp, task_id)),
        Write("HSETNX", (fresh.bucket,), ("-", "0")),  # the new seal's marker bucket, expiring
        Write("EXPIREAT", (fresh.bucket,), (str(fresh.bucket_expiry),)),
        Write("ZREM", (DLQ_INDEX,), (task_id,)),
        Write("DEL", (dlq_key(task_id),)),
    ]
    # The sweeper's copy (copy_ttl), as for a fresh submission: a replay lost by the broker
    # before a worker took it is re-queued too (workers.sweeper).
    job = Enqueue(
        record,
        task_id,
        queue,
        message,
        copy_ttl=ttl,
        before=[Write("EXPIRE", (key,), (str(ttl),)) for key in _vault_keys(dead_record, task_id)],
        after=after,
    )
    try:
        await aenqueue(commit, job)
    except NotEnqueuedError:
        with contextlib.suppress(Exception):  # best effort: the refusal is reported anyway
            await undo_partial_enqueue(client, task_id, owner)
        raise DeadLetterError(
            500, "Redis refused the requeue; nothing was queued", "error"
        ) from None
    dead = _parse(task_id, dead_record)
    return DeadLetter(**{**dead.__dict__, "replays": replays + 1})


async def purge(client: redis.asyncio.Redis, task_id: str) -> DeadLetter:
    """Delete the dead letter and the task's stored secrets."""
    record = await _load(client, task_id)
    dead = _parse(task_id, record)
    async with client.pipeline(transaction=True) as pipe:
        pipe.zrem(DLQ_INDEX, task_id)
        pipe.delete(dlq_key(task_id))
        for vault_key in _vault_keys(record, task_id):
            pipe.delete(vault_key)
        purged: dict[Any, Any] = {"state": TaskState.FAILED, "error": f"{dead.reason}; purged"}
        pipe.hset(task_key(task_id), mapping=purged)
        await pipe.execute()
    return dead


def _vault_keys(record: dict[str, str], task_id: str) -> list[str]:
    """The task's vault keys named in its dead letter, only those: a worker writes the
    record, and must not get the gateway to expire or delete any other key."""
    prefix = f"{VAULT_PREFIX}{task_id}:"
    return [key for key in record.get("vault_keys", "").split() if key.startswith(prefix)]
