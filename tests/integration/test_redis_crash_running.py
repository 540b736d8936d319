"""kill -9 of Redis while a task's body runs: the run carries on, and no second run of the
same task starts beside it.

When Redis goes away, Celery's consumer loses its broker connection and kombu puts back
every message its channel had delivered and not yet acknowledged - including the ones
whose runs are still going in the pool processes. Put back, such a message is delivered
again at once, and its start gate (the attempt still ``started``) takes it for a run that
was cut off: a second run of the task would start while the first is still in its body,
before either could record a side effect. The worker keeps the deliveries of running tasks
held instead; each run settles its own delivery when it ends.

The run's success commit is then the first command on a connection that sat idle through
the restart: dead before anything was sent on it. Commands are never re-sent (one whose
connection broke may have run), so the client checks a connection idle for a while with a
PING first and replaces it if that fails (``security.tls.FreshSSLConnection``).
"""

from __future__ import annotations

import time

import pytest
import redis

from security.tls import IDLE_CHECK
from tests.support.metrics_run import PAYLOAD_CANARY
from tests.support.processes import wait_for
from tests.support.stacks import RELIABILITY_MODULES, PrivateStack, crash_stack
from workers.contract.wire import DEFAULT_QUEUE, decode_record, task_key

pytestmark = pytest.mark.integration

BODY_SECONDS = 5.0  # the run sleeps this long: Redis is killed and back well inside it

# Redis with appendfsync always, two workers of two processes each, and the gateway.
stack = crash_stack("redis-crash-running", modules=RELIABILITY_MODULES)


def _state(stack: PrivateStack, task_id: str) -> str:
    with stack.redis_client() as client:
        return decode_record(client.hgetall(task_key(task_id))).get("state", "missing")


def _idle(stack: PrivateStack) -> bool:
    with stack.redis_client() as client:
        return int(client.llen(DEFAULT_QUEUE)) + int(client.hlen("unacked")) == 0


def test_redis_kill_9_during_a_run_starts_no_second_run_beside_it(
    stack: PrivateStack,
) -> None:
    """The body is sleeping when Redis is killed and restarted: the task runs once, its
    side effect happens once, and it ends succeeded with nothing left in flight. The
    worker logs the delivery it kept held, without the payload."""
    with stack.new_client().http() as http:
        response = http.post(
            "/v1/tasks/test.slow_effect", json={"seconds": BODY_SECONDS, "note": PAYLOAD_CANARY}
        )
    assert response.status_code == 202, response.text
    task_id = str(response.json()["id"])
    wait_for(lambda: stack.starts(task_id), timeout=30, what="the run started")

    stack.restart_redis(down_for=1.5, kill=True)

    wait_for(
        lambda: _state(stack, task_id) == "succeeded",
        timeout=60,
        what="the task succeeded",
        interval=0.5,
    )
    wait_for(lambda: _idle(stack), timeout=30, what="nothing left in flight")
    starts = stack.starts(task_id)
    assert len(starts) == 1, f"runs started: {starts}"
    assert len(stack.effects(task_id)) == 1
    logs = "".join(path.read_text() for path in stack.log_files())
    assert "its run goes on; left held, not put back" in logs
    assert PAYLOAD_CANARY not in logs


def test_a_connection_idle_across_a_redis_restart_is_replaced_before_its_next_command(
    stack: PrivateStack,
) -> None:
    """A script on a connection that was idle while Redis restarted runs once, on a new
    connection, instead of failing; its retry count stays 0 (nothing is re-sent). A
    client of one kept connection, as a worker's pool process has: a pooled client's
    checkout already notices a closed socket."""
    with stack.redis.tls.client(single_connection_client=True) as client:
        client.set("tg:test-idle", "before")
        assert client.connection is not None
        assert client.connection.retry.get_retries() == 0
        count = client.register_script("return redis.call('INCR', KEYS[1])")
        stack.restart_redis(down_for=0.5, kill=True)
        time.sleep(IDLE_CHECK * 2)
        assert count(keys=["tg:test-idle-count"]) == 1
        assert client.get("tg:test-idle") == b"before"
        client.delete("tg:test-idle", "tg:test-idle-count")


def test_with_redis_down_an_idle_connection_still_fails_its_command(
    stack: PrivateStack,
) -> None:
    """The check replaces a stale connection only if Redis answers: with Redis down the
    command fails with ConnectionError, as before."""
    with stack.redis.tls.client(single_connection_client=True) as client:
        assert client.ping()
        stack.stop_redis(kill=True)
        try:
            time.sleep(IDLE_CHECK * 2)
            with pytest.raises(redis.ConnectionError):
                client.get("tg:test-idle")
        finally:
            stack.start_redis_again()
        assert client.ping()
