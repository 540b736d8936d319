"""Lost broker messages for the sweeper tests: made, found and their re-queues audited.

A message is lost the way a Redis restart loses one: taken off the queue and never
recorded in kombu's ``unacked`` hash. The sweep timings come from ``FAST_SWEEP``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis

from security.audit import AuditWriter, iter_records
from security.keystore import KeyRing
from tests.support.replies import as_bytes
from tests.support.stacks import FAST_SWEEP, PrivateStack, running
from workers.contract.wire import (
    DEFAULT_QUEUE,
    GLOBAL_QUEUED,
    KOMBU_UNACKED,
    SWEEP_LOCK,
    message_copy_key,
    suspect_key,
    task_key,
)
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


def sweeper_fixtures() -> tuple[Any, Any, Any, Any]:
    """The per-test fixtures of a sweeper test module (``stack``, ``http``, ``client``,
    ``sweepers``), over the module's own ``module_stack``. Assign them to module-level names."""

    @pytest.fixture(name="stack")
    def stack(module_stack: PrivateStack) -> Iterator[PrivateStack]:
        """The module's stack with an empty queue, in-flight hash, queued set and no lock."""
        with module_stack.redis_client() as client:
            marks = list(client.scan_iter(match=suspect_key("*")))
            client.delete(DEFAULT_QUEUE, KOMBU_UNACKED, "unacked_index", GLOBAL_QUEUED, SWEEP_LOCK)
            if marks:
                client.delete(*marks)
        with running(module_stack):
            yield module_stack

    @pytest.fixture(name="http")
    def http(stack: PrivateStack) -> Iterator[httpx.Client]:
        with stack.new_client().http() as client:
            yield client

    @pytest.fixture(name="client")
    def client(stack: PrivateStack) -> Iterator[redis.Redis]:
        with stack.redis_client() as redis_client:
            yield redis_client

    @pytest.fixture(name="sweepers")
    def sweepers(client: redis.Redis, worker_keys: KeyRing) -> MakeSweeper:
        """Sweepers as a worker makes them: their re-queues audited with the worker's keys."""
        writer = AuditWriter(client, worker_keys.audit)

        def make(holder: str = "test-a") -> Sweeper:
            return Sweeper(
                client, audit=lambda: writer, interval=INTERVAL, grace=GRACE, holder=holder
            )

        return make

    return stack, http, client, sweepers
