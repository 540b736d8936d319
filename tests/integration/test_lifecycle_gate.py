"""The start gate counts the runs of an attempt and stops one that keeps being cut off."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator

import pytest
import redis

from security.vault import vault_key
from taskgate.redis_server import RedisServer
from workers.lifecycle import Lifecycle
from workers.wire import KOMBU_UNACKED, KOMBU_UNACKED_INDEX, decode_record, done_key, task_key

pytestmark = pytest.mark.integration


@pytest.fixture
def gate_client(tls_redis: RedisServer) -> Iterator[redis.Redis]:
    with tls_redis.tls.client() as client:
        yield client


def _queued_task(client: redis.Redis) -> str:
    task_id = str(uuid.uuid4())
    client.hset(task_key(task_id), mapping={"state": "queued", "owner": "c1", "attempts": "0"})
    return task_id


def test_each_start_of_a_cut_off_attempt_counts_until_the_limit_refuses_it(
    gate_client: redis.Redis,
) -> None:
    """Runs 1..3 start (each left 'started', as a killed run leaves it); the fourth is
    refused: not started, no secrets fetched, the record left as the last run left it."""
    life = Lifecycle(gate_client)
    task_id = _queued_task(gate_client)
    vault_entry = vault_key(task_id, secrets.token_urlsafe(16))  # as swap_secrets makes them
    gate_client.set(vault_entry, b"sealed")
    gates = [life.open_gate(task_id, 1, vault=[vault_entry], max_runs=3) for _ in range(4)]
    record = decode_record(gate_client.hgetall(task_key(task_id)))
    gate_client.delete(vault_entry, task_key(task_id))
    assert [gate.runs for gate in gates] == [1, 2, 3, 4]
    assert [gate.too_many_runs for gate in gates] == [False, False, False, True]
    assert gates[2].blobs == {vault_entry: b"sealed"}
    assert gates[3].blobs == {}
    assert record["state"] == "started"
    assert record["runs"] == "3"


def test_a_new_attempt_or_a_finished_run_starts_the_count_again(
    gate_client: redis.Redis,
) -> None:
    """A retry's delivery (the next attempt), or a start after the record left 'started'
    (retried, requeued from the dead letters), is a first run again."""
    life = Lifecycle(gate_client)
    task_id = _queued_task(gate_client)
    first = [life.open_gate(task_id, 1, max_runs=2).runs for _ in range(2)]
    next_attempt = life.open_gate(task_id, 2, max_runs=2)
    life.retried(task_id, "ConnectionError", 1.0)
    after_retried = life.open_gate(task_id, 2, max_runs=2)
    gate_client.hset(task_key(task_id), mapping={"state": "queued", "attempts": "0"})
    after_requeue = life.open_gate(task_id, 1, max_runs=2)
    gate_client.delete(task_key(task_id))
    assert first == [1, 2]
    assert (next_attempt.runs, next_attempt.too_many_runs) == (1, False)
    assert (after_retried.runs, after_retried.too_many_runs) == (1, False)
    assert (after_requeue.runs, after_requeue.too_many_runs) == (1, False)


def test_a_revoked_or_finished_task_is_not_counted(gate_client: redis.Redis) -> None:
    """The gate's other answers come first: nothing to run, no run counted."""
    life = Lifecycle(gate_client)
    task_id = _queued_task(gate_client)
    life.finish(task_id, "succeeded", ttl=60)
    done = life.open_gate(task_id, 1, max_runs=1)
    record = decode_record(gate_client.hgetall(task_key(task_id)))
    gate_client.delete(task_key(task_id), done_key(task_id))
    assert done.done
    assert (done.runs, done.too_many_runs) == (0, False)
    assert "runs" not in record


def test_a_delivery_left_to_the_gate_without_a_copy_is_not_recorded_and_still_starts(
    gate_client: redis.Redis,
) -> None:
    """Another delivery of the same message took the copy first: nothing to record from,
    so nothing is written to kombu's hash (no half entry), the gate says so, and the
    start goes on as that duplicate's would (the run count decides)."""
    life = Lifecycle(gate_client)
    task_id = _queued_task(gate_client)
    tag = str(uuid.uuid4())
    gate = life.open_gate(task_id, 1, delivery=(tag, "", "taskgate"))
    recorded = gate_client.hexists(KOMBU_UNACKED, tag)
    indexed = gate_client.zscore(KOMBU_UNACKED_INDEX, tag)
    gate_client.delete(task_key(task_id))
    assert not gate.recorded
    assert not recorded
    assert indexed is None
    assert gate.runs == 1
    assert not gate.too_many_runs
