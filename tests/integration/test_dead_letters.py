"""Dead letters: reached after the last attempt with growing delays; listed, inspected,
requeued (admin API and CLI, capped), purged with the task's secrets; all of it audited.

Runs on a private stack (own Redis, gateway and worker) loading the test tasks of
``reliability_tasks``: ``test.always_fails`` (4 attempts, backoff base 1 s, jitter) and
``test.fails_fast`` (2 attempts, 0.1-0.2 s apart) for the admin operations.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from gateway.stores.deadletters import MAX_REPLAYS
from taskgate.cli.main import app
from tests.integration.reliability_tasks import ALWAYS_FAILS_POLICY
from tests.support.processes import wait_for
from tests.support.stacks import RELIABILITY_MODULES, SHORT_TIMINGS, PrivateStack, private_stack
from workers.contract.deadletters import DLQ_INDEX, dlq_key
from workers.contract.keys import AUDIT_HEAD, GLOBAL_QUEUED, message_copy_key, queued_key

pytestmark = pytest.mark.integration


# A private Redis, gateway and worker for this module.
stack = private_stack(
    "dead-letters", modules=RELIABILITY_MODULES, timings=SHORT_TIMINGS, worker_concurrency=2
)


@pytest.fixture(scope="module")
def owner(stack: PrivateStack) -> Iterator[httpx.Client]:
    """An API client's HTTPS session (token for every task and tasks:read)."""
    with stack.new_client().http() as http:
        yield http


@pytest.fixture
def admin(stack: PrivateStack) -> Iterator[httpx.Client]:
    with stack.admin_http() as http:
        yield http


def _submit(http: httpx.Client, name: str, payload: dict[str, Any]) -> str:
    response = http.post(f"/v1/tasks/{name}", json=payload)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _dead(stack: PrivateStack, task_id: str, runs: int) -> dict[str, str]:
    """Wait until the task is dead-lettered after ``runs`` runs in all; its record."""

    def settled() -> dict[str, str] | None:
        with stack.redis_client() as client:
            listed = client.zscore(DLQ_INDEX, task_id) is not None
            stored = client.exists(dlq_key(task_id))
        record = stack.record(task_id)
        done = record.get("state") == "dead_lettered" and listed and stored
        return record if done and len(stack.effects(task_id)) == runs else None

    return dict(wait_for(settled, timeout=40, what=f"{task_id} dead-lettered after {runs} runs"))


PAYLOAD_CANARY = f"canary-payload-{uuid.uuid4().hex}"
SECRET_CANARY = f"canary-secret-{uuid.uuid4().hex}"
CANARIES = {"note": PAYLOAD_CANARY, "token": SECRET_CANARY}


def _no_canary(*texts: str) -> None:
    """Neither the payload nor the secret of a task appears in what a refusal shows."""
    for text in texts:
        assert PAYLOAD_CANARY not in text
        assert SECRET_CANARY not in text


def _stamp(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def test_always_failing_task_is_dead_lettered_after_four_attempts_with_growing_delays(
    stack: PrivateStack, owner: httpx.Client, admin: httpx.Client
) -> None:
    """Four runs, each retry waits at least half its doubling bound; then a sealed dead letter.

    With jitter the delay before run n+1 is drawn from [b_n/2, b_n], b_n = base * 2**(n-1)
    (1, 2, 4 s here). Two consecutive draws can be equal (b_n, then b_(n+1)/2 = b_n), so
    "each gap longer than the last" would be a coin toss; what the policy guarantees, and
    what is asserted, is: every scheduled delay (the retry's ETA minus the failure time) and
    every actual gap (next start minus the failure) is at least b_n/2, a bound that doubles
    each time; no retry starts before its ETA; and two steps apart the delay strictly grows,
    since the later one is at least b_(n+2)/2 = 2 * b_n while the earlier is at most b_n
    (plus the few milliseconds between the failure stamp and Celery computing the ETA).
    """
    task_id = _submit(owner, "test.always_fails", {"note": "n", "token": "s3cret-v4lue"})
    record = _dead(stack, task_id, runs=ALWAYS_FAILS_POLICY.max_attempts)
    assert record["attempts"] == "4"
    assert record["error"] == "ConnectionError"
    runs = stack.starts(task_id)
    assert [run[1] for run in runs] == ["1", "2", "3", "4"]
    assert runs[0][3] == "-"  # the first run had no ETA
    started = [float(run[2]) for run in runs]
    etas = [_stamp(run[3]) for run in runs[1:]]
    failed = [float(line.split()[1]) for line in stack.effects(task_id)]
    bounds = [ALWAYS_FAILS_POLICY.backoff_base * 2**n for n in range(3)]
    scheduled = [eta - fail for eta, fail in zip(etas, failed, strict=False)]
    waited = [start - fail for start, fail in zip(started[1:], failed, strict=False)]
    for bound, planned, actual, eta, start in zip(
        bounds, scheduled, waited, etas, started[1:], strict=True
    ):
        assert planned >= bound / 2, (bounds, scheduled)
        assert actual >= bound / 2, (bounds, waited)
        assert start >= eta - 0.05, "a retry started before its ETA"
    assert scheduled[2] > scheduled[0], scheduled
    assert waited[2] > bounds[0], waited

    assert len(stack.vault_keys(task_id)) == 1, "the secret is kept for a requeue"
    status = owner.get(f"/v1/tasks/{task_id}").json()
    assert status["status"] == "dead_lettered"
    assert status["error"] == {"type": "ConnectionError", "detail": None, "attempt": 4}
    listed = admin.get("/v1/admin/dead-letters").json()["items"]
    mine = [item for item in listed if item["id"] == task_id]
    assert len(mine) == 1
    assert mine[0]["task"] == "test.always_fails"
    assert mine[0]["attempts"] == 4
    assert mine[0]["reason"] == "ConnectionError"
    assert mine[0]["replays"] == 0
    inspected = admin.get(f"/v1/admin/dead-letters/{task_id}")
    assert inspected.status_code == 200
    assert inspected.json() == mine[0]
    assert "s3cret" not in inspected.text
    assert len(stack.audited(task_id, "task.retried")) == 3
    assert len(stack.audited(task_id, "task.dead_lettered")) == 1
    assert ("admin", "ok") in stack.audited("dead-letters", "admin.dlq.list")
    assert stack.audited(task_id, "admin.dlq.inspect") == [("admin", "ok")]


def test_requeue_over_http_runs_the_dead_letter_again_and_is_audited(
    stack: PrivateStack, owner: httpx.Client, admin: httpx.Client
) -> None:
    """POST .../requeue answers 202, the task runs again with a fresh budget, replays = 1."""
    task_id = _submit(owner, "test.fails_fast", {"note": "n", "token": "s3cret-v4lue"})
    _dead(stack, task_id, runs=2)
    response = admin.post(f"/v1/admin/dead-letters/{task_id}/requeue")
    assert response.status_code == 202, response.text
    assert response.json() == {"id": task_id, "status": "queued", "replays": 1}
    record = _dead(stack, task_id, runs=4)
    assert record["attempts"] == "2"  # a fresh attempt budget, not 3 and 4
    assert [run[1] for run in stack.starts(task_id)] == ["1", "2", "1", "2"]
    assert admin.get(f"/v1/admin/dead-letters/{task_id}").json()["replays"] == 1
    assert len(stack.vault_keys(task_id)) == 1
    assert stack.audited(task_id, "admin.dlq.requeue") == [("admin", "ok")]
    assert len(stack.audited(task_id, "task.dead_lettered")) == 2


def test_requeue_whose_audit_append_fails_queues_nothing_and_a_retry_queues_it_once(
    stack: PrivateStack, owner: httpx.Client, admin: httpx.Client
) -> None:
    """The requeue's record goes in the same atomic call as the requeue: with the audit
    chain refusing appends (its head key gone) the answer is 503 and nothing changed - the
    dead letter, the task record, no copy, no run (and the CLI says so); once the chain is
    whole a requeue queues it with exactly one record."""
    task_id = _submit(owner, "test.fails_fast", CANARIES)
    before = _dead(stack, task_id, runs=2)
    with stack.redis_client() as client:
        head = client.get(AUDIT_HEAD)
        assert head is not None
        client.delete(AUDIT_HEAD)
        try:
            refused = admin.post(f"/v1/admin/dead-letters/{task_id}/requeue")
            env = {**stack.env, "TASKGATE_OPERATOR_TOKEN": stack.admin_token}
            by_cli = CliRunner().invoke(app, ["dlq", "requeue", task_id], env=env)
        finally:
            client.set(AUDIT_HEAD, head)
        assert by_cli.exit_code == 1, by_cli.output
        assert "audit log refused the record (head_missing): nothing was requeued" in by_cli.output
        assert "Traceback" not in by_cli.output
        assert refused.status_code == 503, refused.text
        _no_canary(refused.text, by_cli.output)
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert client.exists(dlq_key(task_id)) == 1
        assert client.exists(message_copy_key(task_id)) == 0
        assert client.zscore(DLQ_INDEX, task_id) is not None
    time.sleep(1)  # a message queued by mistake would have started by now
    assert stack.record(task_id) == before
    assert len(stack.starts(task_id)) == 2
    assert stack.audited(task_id, "admin.dlq.requeue") == []
    again = admin.post(f"/v1/admin/dead-letters/{task_id}/requeue")
    assert again.status_code == 202, again.text
    _dead(stack, task_id, runs=4)
    assert stack.audited(task_id, "admin.dlq.requeue") == [("admin", "ok")]


def test_requeue_redis_refuses_to_write_is_an_audited_error_that_queues_nothing(
    stack: PrivateStack, admin: httpx.Client
) -> None:
    """A write of the requeue refused by Redis (the owner's queued set holds a string)
    stops it before the push: a 500 problem, the 'ok' record followed by an 'error' one,
    the task failed as not enqueued, no copy left for the sweeper, no run."""
    api = stack.new_client()
    with api.http() as http:
        task_id = _submit(http, "test.fails_fast", CANARIES)
    _dead(stack, task_id, runs=2)
    with stack.redis_client() as client:
        client.set(queued_key(api.client_id), "not a sorted set")
        try:
            refused = admin.post(f"/v1/admin/dead-letters/{task_id}/requeue")
        finally:
            client.delete(queued_key(api.client_id))
        assert refused.status_code == 500, refused.text
        assert "WRONGTYPE" not in refused.text
        _no_canary(refused.text)
        assert client.exists(message_copy_key(task_id)) == 0
        assert client.zscore(GLOBAL_QUEUED, task_id) is None
    time.sleep(1)  # a message queued by mistake would have started by now
    record = stack.record(task_id)
    assert (record["state"], record["error"]) == ("failed", "not_enqueued")
    assert len(stack.starts(task_id)) == 2
    assert stack.audited(task_id, "admin.dlq.requeue") == [("admin", "ok"), ("admin", "error")]
    _no_canary(*(path.read_text(errors="replace") for path in stack.log_files()))


def test_cli_inspects_requeues_and_purges_a_dead_letter_each_audited(
    stack: PrivateStack, owner: httpx.Client
) -> None:
    """`taskgate dlq inspect|requeue|purge` act on the store; each is audited under the name
    of the operator the CLI acts as (the bootstrap ``admin``)."""
    task_id = _submit(owner, "test.fails_fast", {"note": "n", "token": "s3cret-v4lue"})
    _dead(stack, task_id, runs=2)
    runner = CliRunner()
    env = {**stack.env, "TASKGATE_OPERATOR_TOKEN": stack.admin_token}

    shown = runner.invoke(app, ["dlq", "inspect", task_id, "--json"], env=env)
    assert shown.exit_code == 0, shown.output
    assert f'"id": "{task_id}"' in shown.output
    requeued = runner.invoke(app, ["dlq", "requeue", task_id], env=env)
    assert requeued.exit_code == 0, requeued.output
    assert f"requeued {task_id} (replay 1)" in requeued.output
    _dead(stack, task_id, runs=4)
    purged = runner.invoke(app, ["dlq", "purge", task_id], env=env)
    assert purged.exit_code == 0, purged.output
    assert stack.vault_keys(task_id) == []
    again = runner.invoke(app, ["dlq", "requeue", task_id], env=env)
    assert again.exit_code == 1
    assert "no such dead letter" in again.output

    assert stack.audited(task_id, "admin.dlq.inspect") == [("admin", "ok")]
    assert stack.audited(task_id, "admin.dlq.requeue") == [("admin", "ok"), ("admin", "denied")]
    assert stack.audited(task_id, "admin.dlq.purge") == [("admin", "ok")]


def test_purge_over_http_removes_the_dead_letter_and_its_vault_secret(
    stack: PrivateStack, owner: httpx.Client, admin: httpx.Client
) -> None:
    """DELETE .../dead-letters/{id}: gone from list and store, secret deleted, task failed."""
    task_id = _submit(owner, "test.fails_fast", {"note": "n", "token": "s3cret-v4lue"})
    _dead(stack, task_id, runs=2)
    assert len(stack.vault_keys(task_id)) == 1
    response = admin.delete(f"/v1/admin/dead-letters/{task_id}")
    assert response.status_code == 200, response.text
    assert response.json()["purged"] is True
    assert stack.vault_keys(task_id) == []
    assert admin.get(f"/v1/admin/dead-letters/{task_id}").status_code == 404
    listed = admin.get("/v1/admin/dead-letters").json()["items"]
    assert task_id not in {item["id"] for item in listed}
    assert admin.post(f"/v1/admin/dead-letters/{task_id}/requeue").status_code == 404
    status = owner.get(f"/v1/tasks/{task_id}").json()
    assert status["status"] == "failed"
    assert stack.audited(task_id, "admin.dlq.purge") == [("admin", "ok")]
    assert stack.audited(task_id, "admin.dlq.requeue") == [("admin", "denied")]


def test_replay_cap_answers_409_and_the_refusal_is_audited(
    stack: PrivateStack, owner: httpx.Client, admin: httpx.Client
) -> None:
    """After MAX_REPLAYS requeues of the same task the next one is refused with 409."""
    task_id = _submit(owner, "test.fails_fast", {"note": "n"})
    for replay in range(1, MAX_REPLAYS + 1):
        _dead(stack, task_id, runs=2 * replay)
        response = admin.post(f"/v1/admin/dead-letters/{task_id}/requeue")
        assert response.status_code == 202, response.text
        assert response.json()["replays"] == replay
    _dead(stack, task_id, runs=2 * (MAX_REPLAYS + 1))
    assert admin.get(f"/v1/admin/dead-letters/{task_id}").json()["replays"] == MAX_REPLAYS
    refused = admin.post(f"/v1/admin/dead-letters/{task_id}/requeue")
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert f"cap {MAX_REPLAYS}" in refused.json()["detail"]
    assert stack.record(task_id)["state"] == "dead_lettered"
    assert stack.audited(task_id, "admin.dlq.requeue") == [("admin", "ok")] * MAX_REPLAYS + [
        ("admin", "denied")
    ]
