"""Cancelling a running task: stopped if its declaration allows it, left running (409) if not.

A private stack (own TLS Redis, gateway and workers) loads ``cancel_tasks``, whose tasks
wait for the test to release them, so every step happens while the task is known to be
running - no timing assumption. Workers are started per test, as a test restarts them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from security.audit import iter_records
from tests.support.api import assert_problem
from tests.support.processes import wait_for
from tests.support.stacks import PrivateStack, private_stack, running
from workers.contract.wire import DEFAULT_QUEUE, revoked_key

pytestmark = pytest.mark.integration

CANCEL_MODULES = '["tests.integration.cancel_tasks"]'
CANCELLABLE = "test.cancellable_wait"
NOT_CANCELLABLE = "test.uncancellable_wait"


# A private Redis and gateway; each test starts its own workers.
module_stack = private_stack("cancel", modules=CANCEL_MODULES)


@pytest.fixture
def stack(module_stack: PrivateStack) -> Iterator[PrivateStack]:
    """The module's stack; every worker a test starts is stopped after it."""
    with running(module_stack):
        yield module_stack


def _submit(http: httpx.Client, name: str, release: str, token: str | None = None) -> str:
    payload: dict[str, Any] = {"release": release}
    if token is not None:
        payload["token"] = token
    response = http.post(f"/v1/tasks/{name}", json=payload)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _release(stack: PrivateStack, release: str) -> None:
    stack.side_effects.mkdir(parents=True, exist_ok=True)
    (stack.side_effects / f"release-{release}").touch()


def _lines(stack: PrivateStack, task_id: str) -> list[str]:
    """The task's side-effect lines, without the pid after "before"."""
    return [line.split()[0] for line in stack.effects(task_id)]


def _running(stack: PrivateStack, task_id: str) -> None:
    wait_for(lambda: _lines(stack, task_id), timeout=60, what=f"task {task_id} starting")


def _audit(stack: PrivateStack, task_id: str) -> list[tuple[str, str, str]]:
    """(action, outcome, reason) of every audit record about ``task_id``, oldest first."""
    with stack.redis_client() as client:
        return [
            (e.record.action, e.record.outcome, e.record.reason)
            for e in iter_records(client)
            if e.record.target == task_id
        ]


def _nothing_pending(stack: PrivateStack) -> bool:
    """No message waiting in the queue and none delivered but unacknowledged."""
    with stack.redis_client() as client:
        return int(client.llen(DEFAULT_QUEUE)) + int(client.hlen("unacked")) == 0


def test_running_cancellable_task_is_stopped_revoked_and_its_secrets_deleted(
    stack: PrivateStack,
) -> None:
    """DELETE on a running cancellable task: 202 cancelling, then stopped mid-run (its side
    effect never happens, its cleanup does), revoked, vault emptied, both sides audited."""
    client = stack.new_client()
    stack.start_worker(concurrency=2)
    release = uuid.uuid4().hex[:12]
    with client.http() as http:
        task_id = _submit(http, CANCELLABLE, release, token="s3cret-v4lue")
        _running(stack, task_id)
        assert len(stack.vault_keys(task_id)) == 1
        cancelled = http.delete(f"/v1/tasks/{task_id}")
        assert cancelled.status_code == 202, cancelled.text
        assert cancelled.json()["status"] == "cancelling"
        assert http.get(f"/v1/tasks/{task_id}").json()["status"] in {"cancelling", "revoked"}
        record = stack.wait_state(task_id, timeout=60)
        _release(stack, release)  # too late: the body was stopped, it cannot act any more
        wait_for(lambda: _nothing_pending(stack), timeout=60, what="the message acknowledged")
        body = http.get(f"/v1/tasks/{task_id}").json()
        again = http.delete(f"/v1/tasks/{task_id}")
    assert record["state"] == "revoked"
    assert body["status"] == "revoked"
    assert "result" not in body
    assert _lines(stack, task_id) == ["before", "cleanup"]
    assert stack.vault_keys(task_id) == []
    assert_problem(again, 409)
    audit = _audit(stack, task_id)
    assert ("task.cancel", "ok", "cancelling") in audit
    assert ("task.revoked", "ok", "terminated while running") in audit
    assert not any(action in {"task.succeeded", "task.failed"} for action, _, _ in audit)


def test_running_task_not_declared_cancellable_gets_409_and_completes(
    stack: PrivateStack,
) -> None:
    """DELETE on a running task without cancellable=True: 409, left running, succeeds."""
    client = stack.new_client()
    stack.start_worker(concurrency=2)
    release = uuid.uuid4().hex[:12]
    with client.http() as http:
        task_id = _submit(http, NOT_CANCELLABLE, release, token="s3cret-v4lue")
        _running(stack, task_id)
        refused = http.delete(f"/v1/tasks/{task_id}")
        status_while_running = http.get(f"/v1/tasks/{task_id}").json()["status"]
        with stack.redis_client() as raw:
            revoked = raw.exists(revoked_key(task_id))
        _release(stack, release)
        record = stack.wait_state(task_id, timeout=60)
        body = wait_for(
            lambda: (b := http.get(f"/v1/tasks/{task_id}").json()).get("result") and b,
            timeout=30,
            what="the result stored",
        )
    problem = assert_problem(refused, 409)
    assert problem["type"].endswith("/not-cancellable")
    assert problem["detail"] == (
        "the task is running and its declaration does not allow cancellation"
    )
    assert status_while_running == "started"
    assert not revoked
    assert record["state"] == "succeeded"
    assert body["result"] == {"released": True}
    assert _lines(stack, task_id) == ["before", "after"]
    assert stack.vault_keys(task_id) == []
    audit = _audit(stack, task_id)
    assert ("task.cancel", "denied", "not-cancellable") in audit
    assert not any(action == "task.revoked" for action, _, _ in audit)


def test_stopped_task_is_acknowledged_and_not_run_again_after_a_worker_restart(
    stack: PrivateStack,
) -> None:
    """A task stopped by cancellation is acknowledged, not redelivered like a lost one:
    a restarted worker consumes the queue and never runs it again."""
    client = stack.new_client()
    stack.start_worker(concurrency=1)
    release = uuid.uuid4().hex[:12]
    with client.http() as http:
        task_id = _submit(http, CANCELLABLE, release)
        _running(stack, task_id)
        assert http.delete(f"/v1/tasks/{task_id}").json()["status"] == "cancelling"
        stack.wait_state(task_id, timeout=60)
        wait_for(lambda: _nothing_pending(stack), timeout=60, what="the message acknowledged")
        stack.stop_workers()
        stack.start_worker(concurrency=1)
        probe_release = uuid.uuid4().hex[:12]
        _release(stack, probe_release)
        probe = _submit(http, NOT_CANCELLABLE, probe_release)
        # Nothing was left unacknowledged to hand out again, and the new worker consumes.
        assert stack.wait_state(probe, timeout=60)["state"] == "succeeded"
    assert stack.record(task_id)["state"] == "revoked"
    assert _lines(stack, task_id) == ["before", "cleanup"]
    revoked = [a for a in _audit(stack, task_id) if a[0] == "task.revoked"]
    assert revoked == [("task.revoked", "ok", "terminated while running")]
    assert _nothing_pending(stack)


def test_catalogue_says_which_tasks_are_cancellable(stack: PrivateStack) -> None:
    """The catalogue lists the declaration: cancellable or not."""
    client = stack.new_client()
    with client.http() as http:
        tasks = {t["name"]: t for t in http.get("/v1/tasks/catalog").json()["tasks"]}
    assert tasks[CANCELLABLE]["cancellable"] is True
    assert tasks[NOT_CANCELLABLE]["cancellable"] is False
