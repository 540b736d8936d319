"""Interrupted work resumes in seconds: a lapsed worker's deliveries are reclaimed by a live
one, a paused worker that comes back is fenced off, and a long run keeps its delivery.

A private stack (own Redis with append-only file, own gateway) whose workers beat every
second and count as gone after 3 s; its visibility timeout is 15 s (SHORT_TIMINGS), so a
task of ``test.long`` (its own time limit: 60 s) can outlive it.
"""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from security.audit.read import iter_records
from taskgate.devstack.procs import Child
from tests.support.processes import wait_for
from tests.support.stacks import (
    FINAL_STATES,
    RELIABILITY_MODULES,
    SHORT_TIMINGS,
    PrivateStack,
    private_stack,
    running,
)
from workers.contract.heartbeat import WORKERS
from workers.contract.keys import INFLIGHT
from workers.contract.wire import DEFAULT_QUEUE, decode_record, task_key
from workers.liveness import holder_of

pytestmark = pytest.mark.integration

INTERVAL, LAPSE = 1.0, 3.0
VISIBILITY_TIMEOUT = sum(
    int(SHORT_TIMINGS[name])
    for name in (
        "TASKGATE_TASK_TIME_LIMIT",
        "TASKGATE_MAX_RETRY_DELAY",
        "TASKGATE_VISIBILITY_MARGIN",
    )
)
BURST = 240
CANARY = f"canary-payload-{uuid.uuid4().hex}"
RECOVERY_BOUND = 60.0  # seconds from the kill to the last interrupted task's final state

module_stack = private_stack(
    "liveness",
    modules=RELIABILITY_MODULES,
    timings={
        **SHORT_TIMINGS,
        "TASKGATE_HEARTBEAT_INTERVAL": str(INTERVAL),
        "TASKGATE_HEARTBEAT_LAPSE": str(LAPSE),
    },
)


@pytest.fixture
def stack(module_stack: PrivateStack) -> Iterator[PrivateStack]:
    with running(module_stack) as stack:
        yield stack


def _member(worker: Child) -> str:
    return f"{socket.gethostname()}:{worker.pid}"


def _submit_many(
    stack: PrivateStack, token: str, name: str, payloads: list[dict[str, Any]]
) -> list[str]:
    gateway = stack.gateway
    assert gateway is not None

    def submit(chunk: list[dict[str, Any]]) -> list[str]:
        ids = []
        with gateway.client(headers={"Authorization": f"Bearer {token}"}) as http:
            for payload in chunk:
                response = http.post(f"/v1/tasks/{name}", json=payload)
                assert response.status_code == 202, response.text
                ids.append(str(response.json()["id"]))
        return ids

    chunks = [payloads[i::4] for i in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        return [task_id for ids in pool.map(submit, chunks) for task_id in ids]


def _records(stack: PrivateStack, task_ids: list[str]) -> dict[str, dict[str, str]]:
    with stack.redis_client() as client, client.pipeline(transaction=False) as pipe:
        for task_id in task_ids:
            pipe.hgetall(task_key(task_id))
        raw = pipe.execute()
    return {task_id: decode_record(r) for task_id, r in zip(task_ids, raw, strict=True)}


def _held_by(stack: PrivateStack, member: str) -> list[str]:
    """Delivery tags the worker ``member`` holds in flight (its ownership tokens)."""
    with stack.redis_client() as client:
        entries = client.hgetall(INFLIGHT)
    return [tag.decode() for tag, token in entries.items() if holder_of(token.decode()) == member]


def _view(stack: PrivateStack, http: httpx.Client, task_id: str) -> dict[str, Any]:
    body: dict[str, Any] = http.get(f"/v1/tasks/{task_id}").json()
    return body


def test_kill_9_of_one_of_two_workers_mid_burst_finishes_every_interrupted_task_within_60s(
    stack: PrivateStack,
) -> None:
    """Two workers consume a burst of 240 tasks; one is killed (-9, main process and pool)
    with deliveries in flight: the live worker reclaims them once the dead one's heartbeat
    lapses - not after the visibility timeout - and every task ends succeeded, none lost."""
    client = stack.new_client()
    task_ids = _submit_many(stack, client.token(), "test.slow_effect", [{"seconds": 0.3}] * BURST)
    victim = stack.start_worker(concurrency=2)
    stack.start_worker(concurrency=2)
    wait_for(
        lambda: (
            sum(r.get("state") == "succeeded" for r in _records(stack, task_ids).values()) >= 40
            and len(_held_by(stack, _member(victim))) >= 1
        ),
        timeout=60,
        what="the burst under way with the victim holding deliveries",
    )
    stack.kill_worker(victim)
    killed_at = time.monotonic()
    interrupted = [t for t, r in _records(stack, task_ids).items() if r.get("state") == "started"]

    def interrupted_final() -> bool:
        records = _records(stack, interrupted)
        return all(r.get("state") in FINAL_STATES for r in records.values())

    wait_for(interrupted_final, timeout=RECOVERY_BOUND + 30, what="the interrupted tasks ending")
    recovered_in = time.monotonic() - killed_at
    print(f"interrupted tasks: {len(interrupted)}; all final {recovered_in:.1f}s after the kill")
    assert interrupted
    assert recovered_in < RECOVERY_BOUND

    wait_for(
        lambda: all(r.get("state") in FINAL_STATES for r in _records(stack, task_ids).values()),
        timeout=120,
        what="every accepted task ending",
        interval=1,
    )
    records = _records(stack, task_ids)
    assert Counter(r["state"] for r in records.values()) == Counter({"succeeded": BURST})
    assert all(stack.effects(task_id) for task_id in task_ids)  # lost: 0
    rerun = [t for t in interrupted if len(stack.starts(t)) >= 2]
    assert rerun, "no interrupted task was run again"
    reclaimed = [t for t in rerun if stack.audited(t, "task.reclaimed")]
    assert reclaimed, "the dead worker's deliveries were not reclaimed"
    with client.http() as http:
        for task_id in rerun:
            view = _view(stack, http, task_id)
            assert view["status"] == "succeeded"
            assert view["runs"] == len(stack.starts(task_id)) >= 2
            assert stack.audited(task_id, "task.run_interrupted")
            assert [o for _, o in stack.audited(task_id, "task.succeeded")] == ["ok"]
    assert _held_by(stack, _member(victim)) == []


def test_a_paused_worker_whose_delivery_was_reclaimed_is_fenced_off_when_it_resumes(
    stack: PrivateStack,
) -> None:
    """SIGSTOP a worker (main process and pool) mid-run past its heartbeat lapse: the other
    worker reclaims the delivery and completes the task. After SIGCONT the stale run's
    commit is refused and audited: the task completes once, with the live worker's result."""
    client = stack.new_client()
    paused = stack.start_worker(concurrency=1)
    with client.http() as http:
        response = http.post("/v1/tasks/test.long", json={"seconds": 4, "note": CANARY})
        assert response.status_code == 202, response.text
        task_id = str(response.json()["id"])
        first = wait_for(lambda: stack.starts(task_id), timeout=30, what="the first run")
        stale_child = int(first[0][0])
        other = stack.start_worker(concurrency=1)
        os.killpg(paused.pid, signal.SIGSTOP)
        try:
            record = stack.wait_state(task_id, timeout=LAPSE + 30)
            assert record["state"] == "succeeded"
            assert stack.audited(task_id, "task.reclaimed")
            runs = stack.starts(task_id)
            assert len(runs) == 2
            assert int(runs[1][0]) != stale_child
        finally:
            os.killpg(paused.pid, signal.SIGCONT)
        wait_for(
            lambda: stack.audited(task_id, "task.fenced"),
            timeout=30,
            what="the stale run's commit refused",
        )
        view = _view(stack, http, task_id)
    assert [o for _, o in stack.audited(task_id, "task.fenced")] == ["denied"]
    assert [o for _, o in stack.audited(task_id, "task.succeeded")] == ["ok"]
    assert view["status"] == "succeeded"
    assert view["result"] == {"slept": 4}
    assert view["runs"] == 2
    # Both bodies ran to their end (a body cannot be stopped from outside): only one
    # completed - committed its result - and the effect of the stale one is what
    # once() (workers/once.py) is for.
    assert len(stack.effects(task_id)) == 2
    assert paused.alive()
    assert other.alive()
    # Reclaim, refusal and re-run logs and audit records carry ids, never the payload.
    for file in stack.log_files():
        assert CANARY.encode() not in file.read_bytes(), f"the payload found in {file}"
    with stack.redis_client() as redis_client:
        for entry in iter_records(redis_client):
            assert CANARY not in repr(entry.record)
    with stack.redis_client() as redis_client:
        assert redis_client.hlen("unacked") == 0
        assert redis_client.hlen(INFLIGHT) == 0


def test_a_task_longer_than_the_visibility_timeout_is_not_redelivered_while_its_worker_lives(
    stack: PrivateStack,
) -> None:
    """A run of 22 s against a visibility timeout of 15 s, with an idle second worker
    that would take a redelivered message: the heartbeat renews the delivery, so it runs
    once."""
    seconds = VISIBILITY_TIMEOUT + 7
    client = stack.new_client()
    stack.start_worker(concurrency=1)
    stack.start_worker(concurrency=1)
    with client.http() as http:
        response = http.post("/v1/tasks/test.long", json={"seconds": seconds})
        assert response.status_code == 202, response.text
        task_id = str(response.json()["id"])
        record = stack.wait_state(task_id, timeout=seconds + 30)
        time.sleep(2)  # a redelivery would have started by now
        view = _view(stack, http, task_id)
    assert record["state"] == "succeeded"
    assert len(stack.starts(task_id)) == 1
    assert len(stack.effects(task_id)) == 1
    assert view["runs"] == 1
    assert stack.audited(task_id, "task.reclaimed") == []


def test_a_warm_shutdown_keeps_its_running_task_past_the_lapse_and_then_leaves(
    stack: PrivateStack,
) -> None:
    """SIGTERM to a worker running a task longer than the heartbeat lapse, another worker
    alive: the stopping worker keeps beating until its task has finished, so nothing is
    reclaimed - the task runs once - and then its heartbeat is gone."""
    client = stack.new_client()
    stopping = stack.start_worker(concurrency=1)
    with client.http() as http:
        response = http.post("/v1/tasks/test.long", json={"seconds": LAPSE + 4})
        assert response.status_code == 202, response.text
        task_id = str(response.json()["id"])
        wait_for(lambda: stack.starts(task_id), timeout=30, what="the run starting")
        stack.start_worker(concurrency=1)
        os.kill(stopping.pid, signal.SIGTERM)
        record = stack.wait_state(task_id, timeout=LAPSE + 30)
        stopping.process.wait(timeout=30)
    assert record["state"] == "succeeded"
    assert len(stack.starts(task_id)) == 1
    assert stack.audited(task_id, "task.reclaimed") == []
    assert stack.audited(task_id, "task.fenced") == []
    with stack.redis_client() as redis_client:
        assert redis_client.zscore(WORKERS, _member(stopping)) is None
        assert redis_client.hlen(INFLIGHT) == 0


def test_a_cold_shutdown_mid_task_stops_the_run_and_another_worker_runs_it_once(
    stack: PrivateStack,
) -> None:
    """SIGQUIT (Celery's cold shutdown) to a worker running a task: the pool process is
    stopped before the side effect, so the run is over and its message is pushed back at
    once (a run still going on would have kept it held); another worker runs it again,
    once, within seconds."""
    client = stack.new_client()
    stopping = stack.start_worker(concurrency=1)
    with client.http() as http:
        response = http.post("/v1/tasks/test.long", json={"seconds": LAPSE + 2, "note": CANARY})
        assert response.status_code == 202, response.text
        task_id = str(response.json()["id"])
        first = wait_for(lambda: stack.starts(task_id), timeout=30, what="the run starting")
        os.kill(stopping.pid, signal.SIGQUIT)
        assert stopping.process.wait(timeout=30) is not None
        stopped_at = time.monotonic()
        with pytest.raises(ProcessLookupError):
            os.kill(int(first[0][0]), 0)  # the run's pool process is gone with it
        with stack.redis_client() as redis_client:
            assert redis_client.llen(DEFAULT_QUEUE) == 1  # pushed back, not left held
            assert redis_client.hlen(INFLIGHT) == 0
        assert stack.effects(task_id) == []
        stack.start_worker(concurrency=1)
        record = stack.wait_state(task_id, timeout=LAPSE + 30)
        recovered_in = time.monotonic() - stopped_at
        time.sleep(1)  # a third run would have started by now
        view = _view(stack, http, task_id)
    assert record["state"] == "succeeded"
    assert view["runs"] == 2
    assert len(stack.starts(task_id)) == 2
    assert len(stack.effects(task_id)) == 1
    assert [o for _, o in stack.audited(task_id, "task.succeeded")] == ["ok"]
    assert recovered_in < LAPSE + 15
    for file in stack.log_files():
        assert CANARY.encode() not in file.read_bytes(), f"the payload found in {file}"
    with stack.redis_client() as redis_client:
        assert redis_client.hlen("unacked") == 0
        assert redis_client.hlen(INFLIGHT) == 0
