"""Nothing accepted is lost: killed workers, a restarted Redis, retries that end in success.

These tests kill and restart processes, so they run on a private stack (own Redis with
append-only file, own gateway, workers started per test) with short timings: a visibility
timeout of 15 s (see ``tests.support.stacks.SHORT_TIMINGS``).

How kombu (5.7) hands out again a message that a dead worker left unacknowledged: the
message sits in the ``unacked`` hash with its delivery time; ``restore_visible`` moves
entries older than the visibility timeout back to the queue. A worker runs it when its
consumer starts (``on_poll_init``) and then on a timer every ``unacked_restore_interval``
(10 s) - but only every ``unacked_restore_throttle``-th (10th) timer call scans, so a
running worker sweeps every ~100 s by default, not every 10 s. The tests therefore start the
replacement worker once the visibility timeout has passed, as a supervisor restarting a
crashed worker would, and its start-up sweep hands the message out at once.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.bursts import burst_across_a_redis_restart as _burst_across_a_redis_restart
from tests.support.bursts import wait_all_final as _wait_all_final
from tests.support.processes import wait_for
from tests.support.stacks import (
    FAST_SWEEP,
    RELIABILITY_MODULES,
    SHORT_TIMINGS,
    PrivateStack,
    private_stack,
    running,
)
from workers.contract.deadletters import dlq_key
from workers.contract.wire import DEFAULT_QUEUE, decode_record

pytestmark = pytest.mark.integration

VISIBILITY_TIMEOUT = sum(
    int(SHORT_TIMINGS[name])
    for name in (
        "TASKGATE_TASK_TIME_LIMIT",
        "TASKGATE_MAX_RETRY_DELAY",
        "TASKGATE_VISIBILITY_MARGIN",
    )
)


# A private Redis and gateway; each test starts (and kills) its own workers.
module_stack = private_stack(
    "reliability", modules=RELIABILITY_MODULES, timings={**SHORT_TIMINGS, **FAST_SWEEP}
)


@pytest.fixture
def stack(module_stack: PrivateStack) -> Iterator[PrivateStack]:
    """The module's stack; every worker a test starts is stopped after it."""
    with running(module_stack):
        yield module_stack


def _submit(http: httpx.Client, name: str, payload: dict[str, Any]) -> str:
    response = http.post(f"/v1/tasks/{name}", json=payload)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _nothing_pending(stack: PrivateStack) -> bool:
    """No message waiting in the queue and none delivered but unacknowledged."""
    with stack.redis_client() as redis_client:
        waiting = int(redis_client.llen(DEFAULT_QUEUE)) + int(redis_client.hlen("unacked"))
    return waiting == 0


def _wait_visibility_passed(stack: PrivateStack, task_id: str) -> None:
    """Wait until the message delivered at the run's start is older than the timeout."""
    started = float(stack.starts(task_id)[0][2])
    remaining = started + VISIBILITY_TIMEOUT + 0.5 - time.time()
    if remaining > 0:
        time.sleep(remaining)


def test_kill_9_of_the_whole_worker_mid_task_runs_it_on_a_new_worker_with_one_side_effect(
    stack: PrivateStack,
) -> None:
    """A worker killed (-9, pool and all) before the side effect: a new worker completes it once."""
    client = stack.new_client()
    with client.http() as http:
        task_id = _submit(http, "test.slow_effect", {"seconds": 4})
        first = stack.start_worker(concurrency=1)
        wait_for(lambda: stack.starts(task_id), timeout=30, what="the first run starting")
        assert stack.effects(task_id) == []
        stack.kill_worker(first)
        _wait_visibility_passed(stack, task_id)
        assert stack.effects(task_id) == []
        assert stack.record(task_id)["state"] == "started"
        stack.start_worker(concurrency=1)
        record = stack.wait_state(task_id, timeout=30)
        time.sleep(1)  # any duplicate would have started by now: prove there is none
        body = http.get(f"/v1/tasks/{task_id}").json()
    assert record["state"] == "succeeded"
    assert body["status"] == "succeeded"
    assert body["result"] == {"slept": 4}
    assert len(stack.starts(task_id)) == 2
    assert len(stack.effects(task_id)) == 1


def test_kill_9_of_the_pool_child_mid_task_requeues_it_and_the_side_effect_happens_once(
    stack: PrivateStack,
) -> None:
    """Only the pool process killed: task_reject_on_worker_lost requeues; it runs again, once."""
    client = stack.new_client()
    worker = stack.start_worker(concurrency=1)
    with client.http() as http:
        task_id = _submit(http, "test.slow_effect", {"seconds": 3})
        starts = wait_for(lambda: stack.starts(task_id), timeout=30, what="the first run")
        child_pid = int(starts[0][0])
        assert child_pid != worker.pid
        os.kill(child_pid, signal.SIGKILL)
        record = stack.wait_state(task_id, timeout=30)
        time.sleep(1)
        body = http.get(f"/v1/tasks/{task_id}").json()
    assert worker.alive()
    assert record["state"] == "succeeded"
    assert body["result"] == {"slept": 3}
    runs = stack.starts(task_id)
    assert len(runs) == 2
    assert runs[1][0] != str(child_pid)
    assert len(stack.effects(task_id)) == 1


def test_task_revoked_while_queued_never_runs_even_after_a_worker_restart(
    stack: PrivateStack,
) -> None:
    """Cancelled before any worker ran: workers started later acknowledge it, never run it."""
    client = stack.new_client()
    with client.http() as http:
        task_id = _submit(http, "test.quick", {"note": "n", "token": "s3cret-v4lue"})
        assert len(stack.vault_keys(task_id)) == 1
        cancelled = http.delete(f"/v1/tasks/{task_id}")
        assert cancelled.status_code == 202, cancelled.text
        assert cancelled.json()["status"] == "revoked"
        stack.start_worker(concurrency=1)
        wait_for(
            lambda: stack.audited(task_id, "task.revoked") and _nothing_pending(stack),
            timeout=30,
            what="the worker taking and acknowledging the revoked message",
        )
        stack.stop_workers()
        stack.start_worker(concurrency=1)
        # A task submitted after the restart runs: the new worker consumes the queue.
        probe = _submit(http, "test.quick", {"note": "p"})
        assert stack.wait_state(probe)["state"] == "succeeded"
        body = http.get(f"/v1/tasks/{task_id}").json()
    assert stack.effects(task_id) == []
    assert stack.record(task_id)["state"] == "revoked"
    assert body["status"] == "revoked"
    assert "result" not in body
    assert stack.vault_keys(task_id) == []
    # Taken once and acknowledged: nothing handed out again after the restart.
    assert [outcome for _, outcome in stack.audited(task_id, "task.revoked")] == ["ok"]
    assert _nothing_pending(stack)


def test_flaky_task_is_retried_with_backoff_until_it_succeeds(stack: PrivateStack) -> None:
    """Two retryable failures, then success: three runs, one side effect, state succeeded."""
    client = stack.new_client()
    stack.start_worker(concurrency=1)
    with client.http() as http:
        task_id = _submit(http, "test.flaky", {"note": "x"})
        record = stack.wait_state(task_id, timeout=30)
        body = http.get(f"/v1/tasks/{task_id}").json()
    assert record["state"] == "succeeded"
    assert record["attempts"] == "3"
    assert body["result"] == {"attempt": 3}
    assert [run[1] for run in stack.starts(task_id)] == ["1", "2", "3"]
    assert stack.effects(task_id) == ["effect on attempt 3"]


def _run_to_the_end_then_probe(
    stack: PrivateStack, name: str, payload: dict[str, Any]
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """Submit ``name``, wait for its final state; then prove the worker still runs tasks.
    Returns the id, the final task record and the status endpoint's body."""
    with stack.new_client().http() as http:
        task_id = _submit(http, name, payload)
        record = stack.wait_state(task_id, timeout=60)
        body = http.get(f"/v1/tasks/{task_id}").json()
        probe = _submit(http, "test.quick", {"note": "after"})
        assert stack.wait_state(probe)["state"] == "succeeded"
    return task_id, record, body


def test_a_run_stopped_at_its_hard_time_limit_is_dead_lettered_not_left_started(
    stack: PrivateStack,
) -> None:
    """The pool process is killed at the hard limit: the main process dead-letters the task
    (still sealed, reason TimeLimitExceeded) and acknowledges it - not acknowledged as a
    Celery FAILURE while its record still says started."""
    worker = stack.start_worker(concurrency=1)
    task_id, record, body = _run_to_the_end_then_probe(stack, "test.hangs", {"seconds": 20})
    assert record["state"] == "dead_lettered"
    assert record["error"] == "TimeLimitExceeded"
    assert body["status"] == "dead_lettered"
    with stack.redis_client() as redis_client:
        letter = decode_record(redis_client.hgetall(dlq_key(task_id)))
    assert letter["reason"] == "TimeLimitExceeded"
    assert letter["attempts"] == "1"
    assert letter["envelope"]  # sealed, for a requeue
    assert [outcome for _, outcome in stack.audited(task_id, "task.dead_lettered")] == ["error"]
    assert len(stack.starts(task_id)) == 1
    assert stack.effects(task_id) == []
    assert worker.alive()
    wait_for(lambda: _nothing_pending(stack), timeout=10, what="the message acknowledged")


def test_a_task_that_crashes_its_worker_every_time_is_dead_lettered_after_three_runs(
    stack: PrivateStack,
) -> None:
    """Each run kills its own pool process (reject on worker lost puts the message back):
    the fourth start of the same attempt is refused and the task dead-lettered, still
    sealed with its secret kept - the message does not loop for ever."""
    worker = stack.start_worker(concurrency=1)
    task_id, record, body = _run_to_the_end_then_probe(
        stack, "test.crashes", {"note": "n", "token": "s3cret-v4lue"}
    )
    assert record["state"] == "dead_lettered"
    assert record["error"] == "InterruptedRuns"
    assert body["status"] == "dead_lettered"
    assert [run[1] for run in stack.starts(task_id)] == ["1", "1", "1"]
    with stack.redis_client() as redis_client:
        letter = decode_record(redis_client.hgetall(dlq_key(task_id)))
    assert letter["reason"] == "InterruptedRuns"
    assert letter["envelope"]
    assert len(stack.vault_keys(task_id)) == 1  # kept for a requeue
    audited = stack.audited(task_id, "task.dead_lettered")
    assert [outcome for _, outcome in audited] == ["error"]
    assert worker.alive()
    wait_for(lambda: _nothing_pending(stack), timeout=10, what="the message acknowledged")


def test_redis_restart_during_a_burst_keeps_every_accepted_submission(
    stack: PrivateStack,
) -> None:
    """500 POSTs, Redis restarted mid-burst (AOF): every 202 survives and later runs once."""
    accepted, _ = _burst_across_a_redis_restart(stack)
    stack.start_worker(concurrency=2)
    states = _wait_all_final(stack, accepted, timeout=60)
    assert set(states.values()) == {"succeeded"}
    assert all(len(stack.effects(task_id)) == 1 for task_id in accepted)


def test_redis_restart_under_a_consuming_worker_loses_no_accepted_task(
    stack: PrivateStack,
) -> None:
    """The same burst with a worker consuming through the restart: every 202 still ends
    succeeded - a message lost in kombu's pop-then-record window is re-queued by the sweeper."""
    stack.start_worker(concurrency=2)
    accepted, _ = _burst_across_a_redis_restart(stack)
    states = _wait_all_final(stack, accepted, timeout=90)
    assert set(states.values()) == {"succeeded"}
    for task_id in accepted:
        assert stack.effects(task_id), f"{task_id} succeeded without its side effect"
