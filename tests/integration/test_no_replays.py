"""No replays (issue 16, item 4): a gateway-signed message that already ran, was cancelled,
or ended dead-lettered is not run again when a Redis writer with a worker's rights pushes
it back, whatever else such a writer deletes or rewrites (``tg:done``, the revocation, the
task record, the message copy).

Runs on a private stack (own Redis, gateway, one worker with one pool process) loading
``reliability_tasks``; ``test.quick`` writes one line per run (its side effect). The exact
broker message is taken from the gateway's copy (``tg:msg:{id}``) while a slow task keeps
the worker busy. What the "attacker" may not do is what the worker's ACL does not allow:
delete, expire or overwrite the final-marker buckets (``tg:replay:*``).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from security.audit import iter_records
from tests.support.processes import wait_for
from tests.support.stacks import RELIABILITY_MODULES, SHORT_TIMINGS, PrivateStack, private_stack
from workers.contract.deadletters import DLQ_INDEX, dlq_key
from workers.contract.wire import DEFAULT_QUEUE, done_key, message_copy_key, revoked_key, task_key

pytestmark = pytest.mark.integration

stack = private_stack(
    "no-replays", modules=RELIABILITY_MODULES, timings=SHORT_TIMINGS, worker_concurrency=1
)


@pytest.fixture(scope="module")
def owner(stack: PrivateStack) -> Iterator[tuple[str, httpx.Client]]:
    """An API client's id and HTTPS session."""
    client = stack.new_client()
    with client.http() as http:
        yield client.client_id, http


@pytest.fixture
def admin(stack: PrivateStack) -> Iterator[httpx.Client]:
    with stack.admin_http() as http:
        yield http


def _submit(http: httpx.Client, name: str, payload: dict[str, Any]) -> str:
    response = http.post(f"/v1/tasks/{name}", json=payload)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _captured(stack: PrivateStack, http: httpx.Client) -> tuple[str, bytes]:
    """A ``test.quick`` task (no secrets: nothing else would stop a rerun) and its exact
    broker message, read from the gateway's copy while a slow task holds the worker."""
    _submit(http, "test.slow_effect", {"seconds": 2})
    task_id = _submit(http, "test.quick", {"note": "once"})
    with stack.redis_client() as client:
        message = client.get(message_copy_key(task_id))
    assert message is not None, "the worker took the message before it could be read"
    return task_id, message


def _acknowledged(stack: PrivateStack, task_id: str, times: int) -> None:
    """Wait until the worker has acknowledged ``times`` deliveries of a finished task."""
    line = f"[{task_id}] already finished; redelivery acknowledged"
    wait_for(
        lambda: stack.workers[0].log_tail(2000).count(line) >= times,
        timeout=30,
        what=f"{times} refused rerun(s) of {task_id}",
    )


def _push_back(stack: PrivateStack, task_id: str, message: bytes) -> None:
    """What a worker's Redis rights allow: drop the completion record and the revocation,
    rewrite the task record, put the copy back, and push the message onto the queue."""
    with stack.redis_client() as client:
        client.delete(done_key(task_id), revoked_key(task_id))
        client.hset(task_key(task_id), mapping={"state": "queued", "attempts": "0"})
        client.set(message_copy_key(task_id), message)
        client.lpush(DEFAULT_QUEUE, message)


def test_a_finished_task_pushed_back_does_not_run_again(
    stack: PrivateStack, owner: tuple[str, httpx.Client]
) -> None:
    """A succeeded task's message pushed back without tg:done is acknowledged, not run."""
    _, http = owner
    task_id, message = _captured(stack, http)
    assert stack.wait_state(task_id)["state"] == "succeeded"
    assert stack.effects(task_id) == ["effect"]
    _push_back(stack, task_id, message)
    _acknowledged(stack, task_id, 1)
    assert stack.effects(task_id) == ["effect"]
    # Control: the attack above is real. With the marker gone (rights only the gateway's
    # and the operator's identities have; never a worker's) the same message runs again.
    with stack.redis_client() as client:
        for bucket in client.scan_iter("tg:replay:*"):
            client.hdel(
                bucket,
                *[f for f in client.hkeys(bucket) if f.startswith(b"%s:" % task_id.encode())],
            )
    _push_back(stack, task_id, message)
    wait_for(lambda: len(stack.effects(task_id)) == 2, timeout=30, what="the control rerun")


def test_a_cancelled_task_pushed_back_does_not_run(
    stack: PrivateStack, owner: tuple[str, httpx.Client]
) -> None:
    """A cancelled task's message pushed back without its revocation never runs."""
    _, http = owner
    task_id, message = _captured(stack, http)
    cancelled = http.delete(f"/v1/tasks/{task_id}")
    assert cancelled.json()["status"] == "revoked", cancelled.text
    wait_for(  # the original delivery, once the slow task is done
        lambda: stack.audited(task_id, "task.revoked"), timeout=30, what="the revoked delivery"
    )
    _push_back(stack, task_id, message)
    _acknowledged(stack, task_id, 1)
    assert stack.effects(task_id) == []


def test_a_planted_dead_letter_of_a_finished_task_is_not_requeued(
    stack: PrivateStack, owner: tuple[str, httpx.Client], admin: httpx.Client
) -> None:
    """A planted dead letter of a finished task is refused by the admin requeue, audited."""
    client_id, http = owner
    task_id, message = _captured(stack, http)
    assert stack.wait_state(task_id)["state"] == "succeeded"
    envelope = json.loads(message)["body"]  # base64 of the envelope, as a dead letter holds it
    base64.b64decode(envelope, validate=True)
    with stack.redis_client() as client:
        client.hset(
            dlq_key(task_id),
            mapping={
                "name": "test.quick",
                "queue": DEFAULT_QUEUE,
                "owner": client_id,
                "attempts": "1",
                "reason": "ConnectionError",
                "dead_at": f"{time.time():.6f}",
                "envelope": envelope,
                "vault_keys": "",
                "replays": "0",
            },
        )
        client.zadd(DLQ_INDEX, {task_id: time.time()})
    refused = admin.post(f"/v1/admin/dead-letters/{task_id}/requeue")
    assert refused.status_code == 409, refused.text
    assert "did not end dead-lettered (succeeded)" in refused.json()["detail"]
    assert stack.audited(task_id, "admin.dlq.requeue") == [("admin", "denied")]
    time.sleep(1)
    assert stack.effects(task_id) == ["effect"]


@pytest.mark.parametrize(
    ("where", "field", "value", "reason"),
    [
        ("dead letter", "replays", "3", "does not match the task record (replays)"),
        ("dead letter", "owner", "mallory-0123abcd", "does not match the task record (owner)"),
        ("task", "replays", "0 ", "task record refused: task bad_mac"),
    ],
)
def test_tampered_dead_letter_metadata_is_refused_and_audited(
    stack: PrivateStack,
    owner: tuple[str, httpx.Client],
    admin: httpx.Client,
    where: str,
    field: str,
    value: str,
    reason: str,
) -> None:
    """Changed dead-letter metadata or replay count: not requeued, the reason audited."""
    _, http = owner
    task_id = _submit(http, "test.fails_fast", {"note": "n"})
    stack.wait_state(task_id, frozenset({"dead_lettered"}), timeout=40)
    with stack.redis_client() as client:
        wait_for(lambda: client.exists(dlq_key(task_id)), timeout=10, what="the dead letter")
        client.hset(dlq_key(task_id) if where == "dead letter" else task_key(task_id), field, value)
    refused = admin.post(f"/v1/admin/dead-letters/{task_id}/requeue")
    assert refused.status_code == 409, refused.text
    assert reason in refused.json()["detail"]
    with stack.redis_client() as client:
        reasons = [
            e.record.reason
            for e in iter_records(client)
            if e.record.target == task_id and e.record.action == "admin.dlq.requeue"
        ]
    assert any(reason in r for r in reasons), reasons
