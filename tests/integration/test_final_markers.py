"""The start gate and the final outcomes with a seal's final marker (``workers.lifecycle``),
against the real TLS Redis: create-only, only in a bucket the gateway made, final states only."""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from workers.contract.states import TaskState
from workers.contract.wire import replay_bucket, replay_bucket_expiry, replay_field, task_key
from workers.lifecycle import Lifecycle

pytestmark = pytest.mark.integration


def _task(client: redis.Redis) -> tuple[str, tuple[str, str]]:
    """A queued task record and its seal's marker (bucket, field)."""
    task_id = str(uuid.uuid4())
    client.hset(task_key(task_id), mapping={"state": "queued", "owner": "", "attempts": "0"})
    iat = time.time()
    return task_id, (replay_bucket(iat + 60), replay_field(task_id, iat))


def _prepare(client: redis.Redis, bucket: str, exp: float) -> None:
    """What the gateway's submission commit does before publishing."""
    client.hsetnx(bucket, "-", "0")
    client.expireat(bucket, replay_bucket_expiry(exp))


def test_without_a_bucket_the_gate_runs_and_no_marker_is_created(
    redis_client: redis.Redis,
) -> None:
    """No bucket (a message the gateway did not prepare): runs; a finish creates no key."""
    task_id, marker = _task(redis_client)
    life = Lifecycle(redis_client)
    gate = life.open_gate(task_id, 1, marker=marker)
    assert (gate.marker_ready, gate.ended, gate.runs) == (False, False, 1)
    life.finish(task_id, TaskState.SUCCEEDED, ttl=60, marker=marker)
    assert not redis_client.exists(marker[0])


def test_a_final_outcome_marks_the_seal_and_its_gate_then_refuses_to_start(
    redis_client: redis.Redis,
) -> None:
    """After a final outcome the same seal's gate says ended and does not mark it started."""
    task_id, marker = _task(redis_client)
    _prepare(redis_client, marker[0], time.time() + 60)
    life = Lifecycle(redis_client)
    assert life.open_gate(task_id, 1, marker=marker).marker_ready
    life.finish(task_id, TaskState.DEAD_LETTERED, ttl=60, marker=marker)
    redis_client.hset(task_key(task_id), "state", "queued")  # as a worker's rights allow
    again = life.open_gate(task_id, 1, marker=marker)
    assert (again.ended, again.runs) == (True, 0)
    assert redis_client.hget(task_key(task_id), "state") == b"queued"
    assert redis_client.hget(*marker) == b"dead_lettered"
    left = replay_bucket_expiry(time.time() + 60) - time.time()
    assert 0 < redis_client.ttl(marker[0]) <= left + 1  # expires with its window, not before


def test_a_retry_leaves_no_marker_and_the_first_final_state_wins(
    redis_client: redis.Redis,
) -> None:
    """A retry is not final (the next attempt runs); a later final state never overwrites."""
    task_id, marker = _task(redis_client)
    _prepare(redis_client, marker[0], time.time() + 60)
    life = Lifecycle(redis_client)
    life.open_gate(task_id, 1, marker=marker)
    life.retried(task_id, "ConnectionError", 0.1)
    assert redis_client.hget(*marker) is None
    assert not life.open_gate(task_id, 2, marker=marker).ended
    life.finish(task_id, TaskState.REVOKED, ttl=60, marker=marker)
    life.finish(task_id, TaskState.SUCCEEDED, ttl=60, marker=marker)
    assert redis_client.hget(*marker) == b"revoked"
