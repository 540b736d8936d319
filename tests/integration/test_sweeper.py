"""The sweeper re-queues an accepted task whose broker message was lost, exactly once.

A lost message is made the way a Redis restart makes one: the gateway's message is taken
off the queue and never recorded in kombu's ``unacked`` hash. Most tests drive a
:class:`~workers.sweeper.Sweeper` in the test process with an explicit ``now`` (no worker
runs, so no other sweeper competes for the lock); the end-to-end test lets a real worker's
sweeper find the loss, re-queue the message and run the task. The lock, the sweeper
thread and the kombu layouts it refuses are here too.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from typing import Any

import httpx
import pytest
import redis

from security.audit import AuditWriter
from security.errors import ConfigError
from security.keystore import KeyRing
from taskgate.devstack.procs import free_port
from tests.support.processes import wait_for
from tests.support.stacks import (
    FAST_SWEEP,
    RELIABILITY_MODULES,
    SHORT_TIMINGS,
    PrivateStack,
    private_stack,
)
from tests.support.sweeps import GRACE, INTERVAL, MakeSweeper, sweeper_fixtures
from tests.support.sweeps import audited_requeues as _audited
from tests.support.sweeps import eligible_at as _eligible
from tests.support.sweeps import lose_message as _lose
from tests.support.sweeps import message_copy as _copy
from tests.support.sweeps import queued as _queue
from tests.support.sweeps import submit_slow as _submit
from workers.app import create_celery
from workers.contract.keys import AUDIT_HEAD
from workers.contract.wire import (
    SWEEP_LOCK,
    message_copy_key,
    suspect_key,
    task_key,
)
from workers.settings import WorkerSettings
from workers.sweeper import Sweeper, SweeperService, install, log_sweep

pytestmark = pytest.mark.integration
CANARY_SECONDS = 0.0123457  # a payload value that must never appear in a log line


# A private Redis and gateway; workers only where a test starts one.
module_stack = private_stack(
    "sweeper", modules=RELIABILITY_MODULES, timings={**SHORT_TIMINGS, **FAST_SWEEP}
)


stack_fixture, http_fixture, client_fixture, sweepers_fixture = sweeper_fixtures()


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
