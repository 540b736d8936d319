"""A task's lifecycle in Redis, as the worker sees it: one round trip per transition.

States: queued (gateway) -> started -> retried -> ... -> succeeded | failed |
dead_lettered | revoked. Timings and attempts go to the task record for the status
endpoint; nothing of the payload ever does. The completion record (``tg:done:{id}``)
lets a redelivered message whose earlier run already finished be acknowledged, not run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import redis

from workers.wire import GLOBAL_QUEUED, done_key, queued_key, revoked_key, task_key

__all__ = ["Gate", "mark_finished", "mark_retried", "open_gate"]


@dataclass(frozen=True)
class Gate:
    """What the worker learned before running: may it run, and who owns the task."""

    revoked: bool
    done: bool
    owner: str


def open_gate(client: redis.Redis, task_id: str, attempt: int, *, now: float | None = None) -> Gate:
    """Check revocation and completion; if neither, mark the task started (one round trip)."""
    stamp = f"{now or time.time():.6f}"
    key = task_key(task_id)
    with client.pipeline(transaction=False) as pipe:
        pipe.exists(revoked_key(task_id))
        pipe.exists(done_key(task_id))
        pipe.hget(key, "owner")
        pipe.zrem(GLOBAL_QUEUED, task_id)
        revoked, done, owner_raw, _ = pipe.execute()
    owner = owner_raw.decode() if isinstance(owner_raw, bytes) else (owner_raw or "")
    gate = Gate(revoked=bool(revoked), done=bool(done), owner=owner)
    with client.pipeline(transaction=False) as pipe:
        if owner:
            pipe.zrem(queued_key(owner), task_id)
        if not gate.revoked and not gate.done and client.exists(key):
            pipe.hset(
                key, mapping={"state": "started", "started_at": stamp, "attempts": str(attempt)}
            )
        pipe.execute()
    return gate


def mark_retried(client: redis.Redis, task_id: str, reason: str, delay: float) -> None:
    """Record a retry with its (redacted) reason and delay."""
    key = task_key(task_id)
    if client.exists(key):
        client.hset(key, mapping={"state": "retried", "error": f"{reason}; retry in {delay:.1f}s"})


def mark_finished(
    client: redis.Redis,
    task_id: str,
    state: str,
    *,
    ttl: int,
    error: str = "",
    now: float | None = None,
) -> None:
    """Record the final state; succeeded also writes the completion record."""
    key = task_key(task_id)
    with client.pipeline(transaction=False) as pipe:
        if state == "succeeded":
            pipe.set(done_key(task_id), "1", ex=ttl)
        pipe.exists(key)
        exists = pipe.execute()[-1]
    if exists:
        fields: dict[Any, Any] = {"state": state, "finished_at": f"{now or time.time():.6f}"}
        if error:
            fields["error"] = error
        client.hset(key, mapping=fields)
