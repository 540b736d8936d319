"""The sweeper re-queues an accepted task whose broker message was lost, and nothing else.

A lost message is made the way a Redis restart makes one: the gateway's message is taken
off the queue and never recorded in kombu's ``unacked`` hash. Most tests drive a
:class:`~workers.sweeper.Sweeper` in the test process with an explicit ``now`` (no worker
runs, so no other sweeper competes for the lock); the end-to-end test lets a real worker's
sweeper find the loss, re-queue the message and run the task.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis
from kombu import Connection

from security.audit import AuditWriter, iter_records
from security.errors import ConfigError
from security.keystore import KeyRing
from taskgate.devstack.procs import free_port
from tests.support.broker import delivery_tag, redis_channel
from tests.support.processes import wait_for
from tests.support.replies import as_bytes
from tests.support.stacks import (
    FAST_SWEEP,
    RELIABILITY_MODULES,
    SHORT_TIMINGS,
    PrivateStack,
    private_stack,
    running,
)
from workers.app import create_celery
from workers.celery_ext.transport import recorded_by_gate
from workers.contract.keys import AUDIT_HEAD
from workers.contract.wire import (
    DEFAULT_QUEUE,
    GLOBAL_QUEUED,
    KOMBU_UNACKED,
    KOMBU_UNACKED_INDEX,
    SWEEP_LOCK,
    message_copy_key,
    suspect_key,
    task_key,
)
from workers.lifecycle import Lifecycle
from workers.settings import WorkerSettings
from workers.sweeper import MAX_REQUEUES, Sweeper, SweeperService, install, log_sweep

pytestmark = pytest.mark.integration

GRACE = float(FAST_SWEEP["TASKGATE_SWEEP_GRACE"])
CANARY_SECONDS = 0.0123457  # a payload value that must never appear in a log line
INTERVAL = float(FAST_SWEEP["TASKGATE_SWEEP_INTERVAL"])


# A private Redis and gateway; workers only where a test starts one.
module_stack = private_stack(
    "sweeper", modules=RELIABILITY_MODULES, timings={**SHORT_TIMINGS, **FAST_SWEEP}
)


@pytest.fixture
def stack(module_stack: PrivateStack) -> Iterator[PrivateStack]:
    """The module's stack with an empty queue, in-flight hash, queued set and no lock."""
    with module_stack.redis_client() as client:
        marks = list(client.scan_iter(match=suspect_key("*")))
        client.delete(DEFAULT_QUEUE, KOMBU_UNACKED, "unacked_index", GLOBAL_QUEUED, SWEEP_LOCK)
        if marks:
            client.delete(*marks)
    with running(module_stack):
        yield module_stack


@pytest.fixture
def http(stack: PrivateStack) -> Iterator[httpx.Client]:
    with stack.new_client().http() as client:
        yield client


@pytest.fixture
def client(stack: PrivateStack) -> Iterator[redis.Redis]:
    with stack.redis_client() as redis_client:
        yield redis_client


MakeSweeper = Callable[..., Sweeper]


@pytest.fixture
def sweepers(client: redis.Redis, worker_keys: KeyRing) -> MakeSweeper:
    """Sweepers as a worker makes them: their re-queues audited with the worker's keys."""
    writer = AuditWriter(client, worker_keys.audit)

    def make(holder: str = "test-a") -> Sweeper:
        return Sweeper(client, audit=lambda: writer, interval=INTERVAL, grace=GRACE, holder=holder)

    return make


def _submit(http: httpx.Client, seconds: float = 0) -> str:
    response = http.post("/v1/tasks/test.slow_effect", json={"seconds": seconds})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _copy(client: redis.Redis, task_id: str) -> bytes:
    raw = client.get(message_copy_key(task_id))
    assert isinstance(raw, bytes), "the gateway stored no copy of the message"
    return raw


def _lose(client: redis.Redis, task_id: str) -> bytes:
    """Take the message off the queue without recording it in flight (kombu's lost pop)."""
    copy = _copy(client, task_id)
    # redis-py types LREM's value as str; Redis compares bytes, and the copy is bytes
    assert client.lrem(DEFAULT_QUEUE, 0, copy) == 1  # type: ignore[arg-type]
    return copy


def _eligible(client: redis.Redis, task_id: str) -> float:
    """A sweep time at which the task has waited past the grace period."""
    return float(client.hget(task_key(task_id), "submitted_at") or 0) + GRACE + 1


def _queue(client: redis.Redis) -> list[bytes]:
    return [as_bytes(item) for item in client.lrange(DEFAULT_QUEUE, 0, -1)]


def _kombu(
    stack: PrivateStack, transport: str = "workers.celery_ext.transport:Transport"
) -> Connection:
    """A kombu connection through taskgate's transport, as a worker consumes (or another)."""
    tls = stack.redis.as_user("worker")
    creds = tls.credentials()
    return Connection(
        tls.url,
        userid=creds["username"],
        password=creds["password"],
        transport=transport,
        ssl=tls.celery_ssl(),
        connect_timeout=5,
    )


# kombu's own Redis transport records every delivery in flight itself, as a consumer does
# for a message it got again (restored, flagged redelivered) or one without a copy.
KOMBU_RECORDS = "redis"


def test_gateway_stores_an_exact_copy_of_the_queued_message_until_the_task_starts(
    stack: PrivateStack, http: httpx.Client, client: redis.Redis
) -> None:
    """The copy is the queued message byte for byte, expires with the envelope, and the
    worker's start gate deletes it."""
    task_id = _submit(http, seconds=0)
    copy = _copy(client, task_id)
    assert _queue(client) == [copy]
    assert 0 < int(client.ttl(message_copy_key(task_id))) <= 86_400
    stack.start_worker(concurrency=1)
    assert stack.wait_state(task_id)["state"] == "succeeded"
    assert client.exists(message_copy_key(task_id)) == 0


def test_lost_message_is_requeued_by_the_second_sweep_and_runs_exactly_once(
    stack: PrivateStack, http: httpx.Client, client: redis.Redis, sweepers: MakeSweeper
) -> None:
    """Missing from queue and in-flight hash: marked by one sweep, re-queued (at the
    consuming end, exact bytes) by a sweep a grace period later; a worker runs it once."""
    waiting = _submit(http)
    task_id = _submit(http)
    copy = _lose(client, task_id)
    sweeper = sweepers()
    first = _eligible(client, task_id)
    marked = sweeper.sweep(now=first)
    assert (marked.swept, marked.suspected, marked.requeued) == (True, [task_id], [])
    assert client.exists(suspect_key(task_id)) == 1
    requeued = sweeper.sweep(now=first + GRACE)
    assert (requeued.requeued, requeued.suspected, requeued.abandoned) == ([task_id], [], [])
    assert client.exists(suspect_key(task_id)) == 0
    # RPUSH: kombu pops from the right, so the lost task runs before the one behind it.
    assert _queue(client) == [_copy(client, waiting), copy]
    assert client.hget(task_key(task_id), "requeues") == b"1"
    assert sweeper.sweep(now=first + 3 * GRACE).requeued == []  # queued now: left alone
    stack.start_worker(concurrency=1)
    for each in (task_id, waiting):
        assert stack.wait_state(each)["state"] == "succeeded"
    time.sleep(2)  # a duplicate would have started by now
    assert len(stack.starts(task_id)) == 1
    assert len(stack.effects(task_id)) == 1
    assert client.exists(message_copy_key(task_id)) == 0


def test_a_requeue_whose_audit_append_fails_queues_nothing_and_the_next_sweep_retries(
    http: httpx.Client,
    client: redis.Redis,
    sweepers: MakeSweeper,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The audit chain refuses the append (its head key gone over an existing log): the
    lost message is not pushed, its count and mark are untouched and nothing is audited,
    and the log says so (id and reason only); once the chain is whole again the next
    sweep re-queues it - one record, one message."""
    task_id = _submit(http, seconds=CANARY_SECONDS)
    copy = _lose(client, task_id)
    sweeper = sweepers()
    first = _eligible(client, task_id)
    assert sweeper.sweep(now=first).suspected == [task_id]
    head = client.get(AUDIT_HEAD)
    assert head is not None
    client.delete(AUDIT_HEAD)
    try:
        refused = sweeper.sweep(now=first + GRACE)
    finally:
        client.set(AUDIT_HEAD, head)
    assert (refused.requeued, refused.failed) == ([], [(task_id, "head_missing")])
    caplog.set_level(logging.INFO, logger="taskgate.worker")
    log_sweep(refused)
    logged = caplog.text
    assert f"task {task_id}: lost message not re-queued (head_missing)" in logged
    assert str(CANARY_SECONDS) not in logged
    assert json.loads(copy)["body"][:40] not in logged
    assert _queue(client) == []
    assert client.hget(task_key(task_id), "requeues") is None
    assert client.exists(suspect_key(task_id)) == 1
    assert _audited(client, task_id) == []
    again = sweeper.sweep(now=first + GRACE)
    assert (again.requeued, again.failed) == ([task_id], [])
    assert _queue(client) == [copy]
    assert client.hget(task_key(task_id), "requeues") == b"1"
    assert _audited(client, task_id) == [("task.requeued_lost", "ok")]


def test_a_task_that_moves_on_between_the_look_and_the_requeue_is_not_pushed(
    http: httpx.Client, client: redis.Redis, worker_keys: KeyRing
) -> None:
    """The re-queue is fenced on what the sweep saw: a task that started, or that another
    sweeper re-queued, after the sweep looked is left alone - no push, no record."""
    writer = AuditWriter(client, worker_keys.audit)
    task_id = _submit(http)
    _lose(client, task_id)
    meanwhile: list[tuple[str, str]] = []

    def audit() -> AuditWriter:  # called between the sweep's look and its write
        for field, value in meanwhile:
            client.hset(task_key(task_id), field, value)
        return writer

    sweeper = Sweeper(client, audit=audit, interval=INTERVAL, grace=GRACE, holder="test-a")
    first = _eligible(client, task_id)
    assert sweeper.sweep(now=first).suspected == [task_id]
    for change in (("requeues", "1"), ("state", "started")):
        meanwhile[:] = [change]
        result = sweeper.sweep(now=first + GRACE)
        assert (result.requeued, result.failed) == ([], [])
        assert _queue(client) == []
        assert _audited(client, task_id) == []
        client.hdel(task_key(task_id), "requeues")
        client.hset(task_key(task_id), "state", "queued")


def test_worker_sweeper_finds_a_lost_message_requeues_it_audits_it_and_runs_it_once(
    stack: PrivateStack, http: httpx.Client, client: redis.Redis
) -> None:
    """End to end: a real worker's sweeper marks the lost message first, then re-queues
    it; the re-queue is in the audit chain under the worker's name; the task runs once."""
    task_id = _submit(http)
    _lose(client, task_id)
    stack.start_worker(concurrency=1)
    wait_for(lambda: client.exists(suspect_key(task_id)), timeout=60, what="the first strike")
    assert stack.effects(task_id) == []
    assert stack.wait_state(task_id, timeout=60)["state"] == "succeeded"
    time.sleep(2)
    assert len(stack.starts(task_id)) == 1
    assert len(stack.effects(task_id)) == 1
    actor = f"worker:{socket.gethostname()}"
    assert stack.audited(task_id, "task.requeued_lost") == [(actor, "ok")]
    assert stack.record(task_id)["requeues"] == "1"
    assert client.exists(suspect_key(task_id), message_copy_key(task_id)) == 0
    log = "\n".join(path.read_text(errors="replace") for path in stack.log_files())
    assert f"task {task_id}: message lost by the broker" in log


def test_message_still_in_the_queue_is_never_requeued(
    http: httpx.Client, client: redis.Redis, sweepers: MakeSweeper
) -> None:
    """A task waiting behind a backlog is found in its queue by every sweep."""
    task_id = _submit(http)
    sweeper = sweepers()
    now = _eligible(client, task_id)
    for step in range(4):
        result = sweeper.sweep(now=now + step * GRACE)
        assert (result.swept, result.suspected, result.requeued) == (True, [], [])
    assert _queue(client) == [_copy(client, task_id)]
    assert client.exists(suspect_key(task_id)) == 0


def test_message_in_kombus_unacked_hash_is_never_requeued(
    stack: PrivateStack, http: httpx.Client, client: redis.Redis, sweepers: MakeSweeper
) -> None:
    """Popped and recorded in flight by kombu (a worker holds it): not the sweeper's."""
    task_id = _submit(http)
    sweeper = sweepers()
    now = _eligible(client, task_id)
    with _kombu(stack, KOMBU_RECORDS) as conn:
        message = redis_channel(conn.default_channel).basic_get(DEFAULT_QUEUE)
        assert message is not None
        assert message.headers["id"] == task_id
        assert _queue(client) == []
        assert client.hexists(KOMBU_UNACKED, delivery_tag(message))
        for step in range(4):
            assert sweeper.sweep(now=now + step * GRACE).requeued == []
        assert _queue(client) == []
        message.ack()
    assert client.exists(suspect_key(task_id)) == 0


def test_message_kombu_put_back_reserialised_is_never_requeued(
    stack: PrivateStack, http: httpx.Client, client: redis.Redis, sweepers: MakeSweeper
) -> None:
    """A message kombu restored to the queue (flagged redelivered, so no longer the copy's
    bytes) is found by its delivery tag."""
    task_id = _submit(http)
    copy = _copy(client, task_id)
    with _kombu(stack, KOMBU_RECORDS) as conn:
        message = redis_channel(conn.default_channel).basic_get(DEFAULT_QUEUE)
        assert message is not None
        message.reject(requeue=True)
    queued = _queue(client)
    assert len(queued) == 1
    assert queued[0] != copy
    assert b"redelivered" in queued[0]
    sweeper = sweepers()
    now = _eligible(client, task_id)
    for step in range(4):
        assert sweeper.sweep(now=now + step * GRACE).requeued == []
    assert _queue(client) == queued


def test_a_copied_message_is_recorded_in_flight_by_the_start_gate_not_the_consumer(
    stack: PrivateStack, http: httpx.Client, client: redis.Redis
) -> None:
    """The consumer leaves a gateway message's first delivery unrecorded (no round trip);
    the start gate writes kombu's own entry from the copy - [message, exchange, routing
    key], indexed by time - and takes the copy in the same script; the ack removes it."""
    task_id = _submit(http)
    copy = _copy(client, task_id)
    with _kombu(stack) as conn:
        message = redis_channel(conn.default_channel).basic_get(DEFAULT_QUEUE)
        assert message is not None
        tag = delivery_tag(message)
        assert recorded_by_gate(message)
        assert not client.hexists(KOMBU_UNACKED, tag)
        gate = Lifecycle(client).open_gate(task_id, 1, delivery=(tag, "", DEFAULT_QUEUE))
        assert gate.recorded
        raw = client.hget(KOMBU_UNACKED, tag)
        assert raw is not None
        assert json.loads(raw) == [json.loads(copy), "", DEFAULT_QUEUE]
        assert client.zscore(KOMBU_UNACKED_INDEX, tag) is not None
        assert client.exists(message_copy_key(task_id)) == 0
        message.ack()
    assert not client.hexists(KOMBU_UNACKED, tag)
    assert client.zscore(KOMBU_UNACKED_INDEX, tag) is None


def test_a_gate_recorded_delivery_put_back_returns_once_and_is_then_recorded_by_its_consumer(
    stack: PrivateStack, http: httpx.Client, client: redis.Redis
) -> None:
    """kombu restores what the gate recorded (flagged redelivered; the copy is gone, so
    nothing else goes back); the consumer that gets it again records it itself."""
    task_id = _submit(http)
    with _kombu(stack) as conn:
        channel = redis_channel(conn.default_channel)
        message = channel.basic_get(DEFAULT_QUEUE)
        assert message is not None
        Lifecycle(client).open_gate(task_id, 1, delivery=(delivery_tag(message), "", DEFAULT_QUEUE))
        message.reject(requeue=True)
        queued = _queue(client)
        assert len(queued) == 1
        assert json.loads(queued[0])["headers"]["redelivered"] is True
        again = channel.basic_get(DEFAULT_QUEUE)
        assert again is not None
        assert again.delivery_tag == message.delivery_tag
        assert not recorded_by_gate(again)
        assert client.hexists(KOMBU_UNACKED, delivery_tag(again))
        again.ack()
    assert _queue(client) == []


def test_a_delivery_put_back_before_its_gate_returns_as_the_copy_and_is_not_swept(
    stack: PrivateStack, http: httpx.Client, client: redis.Redis, sweepers: MakeSweeper
) -> None:
    """A delivery rejected (or restored) before any gate recorded it goes back as the
    gateway's copy, byte for byte; the sweeper then finds it queued and leaves it."""
    task_id = _submit(http)
    copy = _copy(client, task_id)
    with _kombu(stack) as conn:
        message = redis_channel(conn.default_channel).basic_get(DEFAULT_QUEUE)
        assert message is not None
        assert _queue(client) == []
        message.reject(requeue=True)
    assert _queue(client) == [copy]
    assert not client.hexists(KOMBU_UNACKED, delivery_tag(message))
    sweeper = sweepers()
    now = _eligible(client, task_id)
    for step in range(4):
        assert sweeper.sweep(now=now + step * GRACE).requeued == []
    assert _queue(client) == [copy]


def test_revoked_task_with_a_lost_message_is_not_requeued(
    http: httpx.Client, client: redis.Redis, sweepers: MakeSweeper
) -> None:
    """Cancelled before it ran: nothing to bring back."""
    task_id = _submit(http)
    assert http.delete(f"/v1/tasks/{task_id}").status_code == 202
    _lose(client, task_id)
    sweeper = sweepers()
    now = _eligible(client, task_id)
    for step in range(3):
        assert sweeper.sweep(now=now + step * GRACE).requeued == []
    assert _queue(client) == []


@pytest.mark.parametrize("state", ["started", "retried", "succeeded", "failed"])
def test_task_past_its_start_is_not_requeued_even_with_a_copy_left(
    http: httpx.Client, client: redis.Redis, state: str, sweepers: MakeSweeper
) -> None:
    """Only a task still queued is the sweeper's: a started or retried task's message is
    a worker's (unacked hash, visibility timeout), a finished one needs nothing."""
    task_id = _submit(http)
    _lose(client, task_id)
    client.hset(task_key(task_id), "state", state)
    sweeper = sweepers()
    now = _eligible(client, task_id)
    for step in range(3):
        result = sweeper.sweep(now=now + step * GRACE)
        assert (result.suspected, result.requeued) == ([], [])
    assert _queue(client) == []


def test_message_marked_once_is_not_requeued_before_the_grace_period_and_a_return_clears_it(
    http: httpx.Client, client: redis.Redis, sweepers: MakeSweeper
) -> None:
    """One strike is not enough: a sweep sooner than the grace period after the mark
    leaves it; a message that turns up in flight (kombu recorded its pop) clears the mark,
    and a later loss starts over from the first strike."""
    task_id = _submit(http)
    copy = _lose(client, task_id)
    sweeper = sweepers()
    first = _eligible(client, task_id)
    assert sweeper.sweep(now=first).suspected == [task_id]
    early = sweeper.sweep(now=first + GRACE - 0.5)
    assert (early.suspected, early.requeued) == ([], [])
    assert client.exists(suspect_key(task_id)) == 1
    assert _queue(client) == []
    # kombu's QoS.append lands late (Redis was briefly unreachable): the message is held.
    tag = _delivery_tag(copy)
    client.hset(KOMBU_UNACKED, tag, b"[]")
    assert sweeper.sweep(now=first + GRACE).requeued == []
    assert client.exists(suspect_key(task_id)) == 0
    client.hdel(KOMBU_UNACKED, tag)
    again = sweeper.sweep(now=first + 2 * GRACE)
    assert (again.suspected, again.requeued) == ([task_id], [])


def test_message_lost_again_and_again_is_given_up_after_the_cap(
    http: httpx.Client, client: redis.Redis, sweepers: MakeSweeper
) -> None:
    """A message that keeps vanishing (say, a worker refuses it) is re-queued at most
    MAX_REQUEUES times; then the copy is dropped and the sweeper reports it abandoned."""
    task_id = _submit(http)
    sweeper = sweepers()
    now = _eligible(client, task_id)
    for _ in range(MAX_REQUEUES):
        _lose(client, task_id)
        assert sweeper.sweep(now=now).suspected == [task_id]
        assert sweeper.sweep(now=now + GRACE).requeued == [task_id]
        now += 2 * GRACE
    _lose(client, task_id)
    sweeper.sweep(now=now)
    gave_up = sweeper.sweep(now=now + GRACE)
    assert (gave_up.requeued, gave_up.abandoned) == ([], [task_id])
    assert client.exists(message_copy_key(task_id)) == 0
    assert _queue(client) == []
    assert _audited(client, task_id) == [("task.requeued_lost", "ok")] * MAX_REQUEUES + [
        ("task.requeue_abandoned", "error")
    ]


def test_lock_keeps_a_second_sweeper_from_sweeping_so_a_message_is_requeued_once(
    http: httpx.Client, client: redis.Redis, sweepers: MakeSweeper
) -> None:
    """Two sweepers (two workers): only the lock holder sweeps, racing or not; the other
    takes over only once the holder stops renewing the lock."""
    task_id = _submit(http)
    copy = _lose(client, task_id)
    first, second = sweepers("worker-a"), sweepers("worker-b")
    now = _eligible(client, task_id)
    assert first.sweep(now=now).suspected == [task_id]
    assert second.sweep(now=now + GRACE).swept is False
    assert _queue(client) == []
    # Both at once, from a fresh lock: one sweeps and re-queues, the other stands aside.
    client.delete(SWEEP_LOCK)
    barrier = threading.Barrier(2)
    results: dict[str, Any] = {}

    def sweep(sweeper: Sweeper) -> None:
        barrier.wait()
        results[sweeper.holder] = sweeper.sweep(now=now + GRACE)

    threads = [threading.Thread(target=sweep, args=(s,)) for s in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(r.swept for r in results.values()) == [False, True]
    assert [r.requeued for r in results.values() if r.swept] == [[task_id]]
    assert _queue(client) == [copy]
    holder = client.get(SWEEP_LOCK)
    other = second if holder == first.holder.encode() else first
    assert other.sweep(now=now + 2 * GRACE).swept is False
    time.sleep(2 * INTERVAL + 0.5)  # the holder stopped sweeping: its lock runs out
    assert other.sweep(now=now + 2 * GRACE).swept is True


def test_sweeper_thread_logs_an_unreachable_redis_and_tries_again_every_interval(
    stack: PrivateStack,
    worker_keys: KeyRing,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A failing sweep is logged (the error type only) and retried; the thread lives on."""
    for key, value in stack.env.items():
        if key.startswith("TASKGATE_"):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("TASKGATE_REDIS_URL", f"rediss://localhost:{free_port()}/0")
    monkeypatch.setenv("TASKGATE_SWEEP_INTERVAL", "0.2")
    caplog.set_level(logging.INFO, logger="taskgate.worker")
    app = create_celery(WorkerSettings(), keys=worker_keys)
    service = app.taskgate_sweeper  # type: ignore[attr-defined]
    assert isinstance(service, SweeperService)
    service.start()
    try:

        def failures() -> int:
            return sum("sweep failed (ConnectionError)" in r.getMessage() for r in caplog.records)

        wait_for(lambda: failures() >= 3, timeout=60, what="three failed sweeps")
        assert service.running()
    finally:
        service.stop()
        app.close()
    assert not service.running()


def test_sweeper_refuses_a_kombu_layout_it_cannot_see_into(
    stack: PrivateStack, worker_keys: KeyRing, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another unacked hash or index name (or a key prefix) would make every message in
    flight look lost, and the success commit acknowledge in the wrong place: the worker
    refuses to start instead."""
    for key, value in stack.env.items():
        if key.startswith("TASKGATE_"):
            monkeypatch.setenv(key, value)
    settings = WorkerSettings()
    app = create_celery(settings, keys=worker_keys)
    try:
        default = dict(app.conf.broker_transport_options)
        for option in (
            {"unacked_key": "inflight"},
            {"unacked_index_key": "inflight_index"},
            {"global_keyprefix": "tg-"},
        ):
            app.conf.broker_transport_options = {**default, **option}
            with pytest.raises(ConfigError, match="unacked"):
                install(app, settings, app.taskgate_runtime)  # type: ignore[attr-defined]
    finally:
        app.close()


def _audited(client: redis.Redis, task_id: str) -> list[tuple[str, str]]:
    """(action, outcome) of the sweeper's audit records about ``task_id``."""
    return [
        (e.record.action, e.record.outcome)
        for e in iter_records(client)
        if e.record.target == task_id and e.record.action.startswith("task.requeue")
    ]


def _delivery_tag(copy: bytes) -> str:
    return str(json.loads(copy)["properties"]["delivery_tag"])
