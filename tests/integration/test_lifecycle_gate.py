"""The start gate counts the runs of an attempt and stops one that keeps being cut off; sent
ahead (``Lifecycle.send_gate``), it gives the same answers and never leaves a reply unread."""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from security.vault import vault_key
from taskgate.devstack.redis_server import RedisServer
from workers.contract.states import TaskState
from workers.contract.wire import (
    KOMBU_UNACKED,
    KOMBU_UNACKED_INDEX,
    decode_record,
    done_key,
    task_key,
)
from workers.lifecycle import Lifecycle

pytestmark = pytest.mark.integration


@pytest.fixture
def gate_client(tls_redis: RedisServer) -> Iterator[redis.Redis]:
    with tls_redis.tls.client() as client:
        yield client


@pytest.fixture
def one_connection(tls_redis: RedisServer) -> Iterator[redis.Redis]:
    """A client with one dedicated connection, as a worker's pool process has."""
    with tls_redis.tls.client(single_connection_client=True) as client:
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
    life.finish(task_id, TaskState.SUCCEEDED, ttl=60)
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


def test_a_gate_sent_ahead_runs_before_its_reply_is_read_and_answers_as_open_gate(
    one_connection: redis.Redis, gate_client: redis.Redis
) -> None:
    """The script runs as soon as it is sent (the record says started before result() is
    called); result() then gives what open_gate gives for a twin task."""
    life = Lifecycle(one_connection)
    ahead, twin = _queued_task(gate_client), _queued_task(gate_client)
    entries = {t: vault_key(t, secrets.token_urlsafe(16)) for t in (ahead, twin)}
    for entry in entries.values():
        gate_client.set(entry, b"sealed")
    sent = life.send_gate(ahead, 1, vault=[entries[ahead]], max_runs=3)
    deadline = time.monotonic() + 5
    while gate_client.hget(task_key(ahead), "state") != b"started":
        assert time.monotonic() < deadline, "the gate did not run before its reply was read"
        time.sleep(0.01)
    gate = sent.result()
    expected = life.open_gate(twin, 1, vault=[entries[twin]], max_runs=3)
    gate_client.delete(*entries.values(), task_key(ahead), task_key(twin))
    assert gate.blobs == {entries[ahead]: b"sealed"}
    assert (gate.owner, gate.runs, gate.done, gate.revoked, gate.too_many_runs) == (
        expected.owner,
        expected.runs,
        expected.done,
        expected.revoked,
        expected.too_many_runs,
    )
    assert one_connection.ping()


def test_an_abandoned_gate_leaves_the_connection_in_step(
    one_connection: redis.Redis, gate_client: redis.Redis
) -> None:
    """A run that stops before it needs the gate's reply (a bad signature) drops the reply:
    the next command on the same connection gets its own answer; abandoning twice, or
    after result(), does nothing."""
    life = Lifecycle(one_connection)
    task_id = _queued_task(gate_client)
    one_connection.set("marker", "mine")
    sent = life.send_gate(task_id, 1)
    sent.abandon()
    sent.abandon()
    assert one_connection.get("marker") == b"mine"
    read = life.send_gate(task_id, 1)
    assert read.result().runs == 2
    read.abandon()
    assert one_connection.get("marker") == b"mine"
    gate_client.delete(task_key(task_id), "marker")


def test_a_gate_sent_ahead_after_redis_lost_its_scripts_still_runs(
    one_connection: redis.Redis, gate_client: redis.Redis
) -> None:
    """Redis restarted (its scripts gone): the NOSCRIPT reply is read and the script loaded
    and run the usual way."""
    life = Lifecycle(one_connection)
    task_id = _queued_task(gate_client)
    gate_client.script_flush()
    gate = life.send_gate(task_id, 1).result()
    state = gate_client.hget(task_key(task_id), "state")
    gate_client.delete(task_key(task_id))
    assert (gate.runs, state) == (1, b"started")
    assert one_connection.ping()


def test_a_gate_whose_connection_was_cut_fails_as_storage_down_and_the_client_recovers(
    one_connection: redis.Redis, gate_client: redis.Redis
) -> None:
    """The connection killed under the gate: result() raises ConnectionError (the worker
    requeues the message) and the client reconnects for the next command."""
    life = Lifecycle(one_connection)
    task_id = _queued_task(gate_client)
    gate_client.client_kill_filter(_id=str(one_connection.client_id()))
    with pytest.raises(redis.ConnectionError):
        life.send_gate(task_id, 1).result()
    assert one_connection.ping()
    gate_client.delete(task_key(task_id))


def test_other_threads_wait_while_a_gate_reply_is_pending(
    one_connection: redis.Redis, gate_client: redis.Redis
) -> None:
    """The connection's lock is held from send to result(): a command from another thread
    waits for it instead of reading the gate's reply as its own."""
    life = Lifecycle(one_connection)
    task_id = _queued_task(gate_client)
    sent = life.send_gate(task_id, 1)
    answers: list[object] = []
    other = threading.Thread(target=lambda: answers.append(one_connection.set("other", "v")))
    other.start()
    time.sleep(0.2)
    waited = other.is_alive()
    gate = sent.result()
    other.join(5)
    stored = gate_client.get("other")
    gate_client.delete(task_key(task_id), "other")
    assert waited
    assert gate.runs == 1
    assert answers == [True]
    assert stored == b"v"


@pytest.mark.parametrize("trouble", ["connection cut", "scripts lost"])
def test_abandoning_a_gate_whose_reply_is_an_error_leaves_a_working_client(
    one_connection: redis.Redis, gate_client: redis.Redis, trouble: str
) -> None:
    """A reply that cannot be read drops the connection (the next command reconnects); an
    error reply (NOSCRIPT) is read like any other: either way the client works after."""
    life = Lifecycle(one_connection)
    task_id = _queued_task(gate_client)
    if trouble == "connection cut":
        gate_client.client_kill_filter(_id=str(one_connection.client_id()))
    else:
        gate_client.script_flush()
    life.send_gate(task_id, 1).abandon()
    one_connection.set("after", "ok")
    assert one_connection.get("after") == b"ok"
    gate_client.delete(task_key(task_id), "after")


def test_a_gate_that_could_not_be_sent_runs_the_usual_way(
    one_connection: redis.Redis, gate_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sending failed (the connection broke under the write): result() runs the gate as
    open_gate does, reconnecting first."""
    life = Lifecycle(one_connection)
    task_id = _queued_task(gate_client)
    conn = one_connection.connection
    assert conn is not None

    def broken(*_args: object, **_kwargs: object) -> None:
        monkeypatch.undo()  # once only
        raise redis.ConnectionError("Broken pipe")

    monkeypatch.setattr(conn, "send_command", broken)
    gate = life.send_gate(task_id, 1).result()
    state = gate_client.hget(task_key(task_id), "state")
    gate_client.delete(task_key(task_id))
    assert (gate.runs, state) == (1, b"started")
    assert one_connection.ping()


def test_a_client_without_a_dedicated_connection_runs_the_gate_at_result(
    gate_client: redis.Redis,
) -> None:
    """A pooled client has no connection to hold a reply on: the gate runs in result()."""
    task_id = _queued_task(gate_client)
    sent = Lifecycle(gate_client).send_gate(task_id, 1)
    queued = gate_client.hget(task_key(task_id), "state")
    gate = sent.result()
    started = gate_client.hget(task_key(task_id), "state")
    gate_client.delete(task_key(task_id))
    assert (queued, gate.runs, started) == (b"queued", 1, b"started")


def test_a_gate_refused_by_redis_raises_and_the_client_goes_on(
    one_connection: redis.Redis, gate_client: redis.Redis
) -> None:
    """A script error (here: the task record is not a hash) is raised by result(), as
    open_gate raises it, with the connection in step for the next command."""
    life = Lifecycle(one_connection)
    task_id = str(uuid.uuid4())
    gate_client.set(task_key(task_id), "not a hash")
    with pytest.raises(redis.ResponseError):
        life.send_gate(task_id, 1).result()
    gate_client.delete(task_key(task_id))
    assert one_connection.ping()


def test_an_unexpected_error_while_sending_is_raised_and_frees_the_connection(
    one_connection: redis.Redis, gate_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anything but a connection problem while sending propagates; the connection is dropped
    and its lock released, so the client works after."""
    conn = one_connection.connection
    assert conn is not None

    def broken(*_args: object, **_kwargs: object) -> None:
        monkeypatch.undo()
        raise redis.DataError("cannot encode")

    monkeypatch.setattr(conn, "send_command", broken)
    with pytest.raises(redis.DataError):
        Lifecycle(one_connection).send_gate(str(uuid.uuid4()), 1)
    assert one_connection.ping()
