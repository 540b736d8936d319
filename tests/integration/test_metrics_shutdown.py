"""A process that stops cleanly takes its last metric counts to Redis on the way out.

The flush interval is set to a minute, so nothing reaches Redis by the timer while the
test runs: what is there after a warm worker shutdown and a gateway stop was flushed by
the shutdown itself (the workers' pool processes and the gateway's lifespan).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.processes import wait_for
from tests.support.stacks import SHORT_TIMINGS, PrivateStack, stack_with_gateway
from workers.contract.keys import METRICS_GATEWAY, METRICS_WORKER
from workers.contract.wire import DEFAULT_QUEUE

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    pki: Any,
    stack_env: dict[str, str],
    admin_token: str,
) -> Iterator[PrivateStack]:
    timings = {**SHORT_TIMINGS, "TASKGATE_METRICS_FLUSH_INTERVAL": "60"}
    with stack_with_gateway(
        tmp_path_factory.mktemp("metrics-shutdown"),
        pki=pki,
        stack_env=stack_env,
        admin_token=admin_token,
        modules='["tests.integration.metrics_tasks"]',
        timings=timings,
    ) as stack:
        yield stack


def _counts(stack: PrivateStack, key: str) -> dict[str, int]:
    with stack.redis_client() as client:
        return {k.decode(): int(v) for k, v in client.hgetall(key).items()}


def test_a_clean_stop_flushes_the_last_counts(stack: PrivateStack) -> None:
    """Counts wait in memory between flushes; a warm worker shutdown and a gateway stop
    write them."""
    stack.start_worker(concurrency=2)
    with stack.new_client().http() as http:
        ids = [http.post("/v1/tasks/mt.ok", json={"note": "n"}).json()["id"] for _ in range(3)]
    for task_id in ids:
        stack.wait_state(task_id, frozenset({"succeeded"}))
    assert "celery_task_succeeded|mt.ok|taskgate" not in _counts(stack, METRICS_WORKER)
    assert "celery_task_sent|mt.ok|taskgate" not in _counts(stack, METRICS_GATEWAY)

    stack.stop_workers()
    worker = _counts(stack, METRICS_WORKER)
    assert worker[f"celery_task_succeeded|mt.ok|{DEFAULT_QUEUE}"] == 3
    assert worker[f"celery_task_started|mt.ok|{DEFAULT_QUEUE}"] == 3

    assert stack.gateway is not None
    stack.gateway.child.stop()
    gateway = wait_for(
        lambda: _counts(stack, METRICS_GATEWAY) or None, timeout=10, what="the gateway's flush"
    )
    assert gateway[f"celery_task_sent|mt.ok|{DEFAULT_QUEUE}"] == 3
    assert gateway["taskgate_tokens|issued"] == 1
