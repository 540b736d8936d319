"""Lost broker messages for the sweeper tests: made, found and their re-queues audited.

A message is lost the way a Redis restart loses one: taken off the queue and never
recorded in kombu's ``unacked`` hash. The sweep timings come from ``FAST_SWEEP``.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import redis

from security.audit import iter_records
from tests.support.replies import as_bytes
from tests.support.stacks import FAST_SWEEP
from workers.contract.wire import DEFAULT_QUEUE, message_copy_key, task_key
from workers.sweeper import Sweeper

GRACE = float(FAST_SWEEP["TASKGATE_SWEEP_GRACE"])
INTERVAL = float(FAST_SWEEP["TASKGATE_SWEEP_INTERVAL"])
MakeSweeper = Callable[..., Sweeper]


def submit_slow(http: httpx.Client, seconds: float = 0) -> str:
    """Submit ``test.slow_effect`` running ``seconds``; its task id."""
    response = http.post("/v1/tasks/test.slow_effect", json={"seconds": seconds})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def message_copy(client: redis.Redis, task_id: str) -> bytes:
    """The copy of the task's broker message the gateway stored."""
    raw = client.get(message_copy_key(task_id))
    assert isinstance(raw, bytes), "the gateway stored no copy of the message"
    return raw


def lose_message(client: redis.Redis, task_id: str) -> bytes:
    """Take the message off the queue without recording it in flight (kombu's lost pop)."""
    copy = message_copy(client, task_id)
    # redis-py types LREM's value as str; Redis compares bytes, and the copy is bytes
    assert client.lrem(DEFAULT_QUEUE, 0, copy) == 1  # type: ignore[arg-type]
    return copy


def eligible_at(client: redis.Redis, task_id: str) -> float:
    """A sweep time at which the task has waited past the grace period."""
    return float(client.hget(task_key(task_id), "submitted_at") or 0) + GRACE + 1


def queued(client: redis.Redis) -> list[bytes]:
    """The messages in the default queue, oldest last."""
    return [as_bytes(item) for item in client.lrange(DEFAULT_QUEUE, 0, -1)]


def audited_requeues(client: redis.Redis, task_id: str) -> list[tuple[str, str]]:
    """(action, outcome) of the sweeper's audit records about ``task_id``."""
    return [
        (e.record.action, e.record.outcome)
        for e in iter_records(client)
        if e.record.target == task_id and e.record.action.startswith("task.requeue")
    ]
