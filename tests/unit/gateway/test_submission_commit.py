"""The stages that write an accepted submission, called directly against the session's
Redis: ``enqueue_job`` and ``commit`` (broker lane), ``record_best_effort``
(best-effort lane).

``commit`` appends the ``allowed`` audit record and runs every write with it in one script
call: all of them or, when Redis refuses one, a refusal that leaves nothing runnable behind.
"""

from __future__ import annotations

import base64
import json

import pytest
import redis

from gateway.http.errors import ApiError
from gateway.state import GatewayState
from gateway.submission.idempotency import IDEMPOTENCY_TTL
from gateway.submission.stages import (
    BEST_EFFORT_STAGES,
    STAGES,
    Submission,
    commit,
    enqueue_job,
    record_best_effort,
    run_stages,
)
from security.errors import AuditError
from security.vault import VAULT_PREFIX
from tests.support.replies import as_bytes, as_fields, as_text, stream_range
from tests.support.submissions import MakeSubmission
from tests.unit.gateway.stage_tasks import STAGE_QUEUE
from workers.contract.enqueue import NotEnqueuedError
from workers.contract.wire import (
    ALL_TASKS,
    GLOBAL_QUEUED,
    message_copy_key,
    owner_index,
    queued_key,
    replay_bucket,
    replay_bucket_expiry,
    task_key,
)

SECRET_BODY = b'{"note": "n", "token": "not-a-real-credential"}'
AUDIT = "tg:audit"


async def _sealed(make: MakeSubmission, state: GatewayState, **options: object) -> Submission:
    """A submission that passed every stage before ``commit``."""
    return await run_stages(await make(body=SECRET_BODY, **options), state, STAGES[:-1])


def _audit_records(client: redis.Redis) -> list[dict[bytes, bytes]]:
    return [as_fields(fields) for _, fields in stream_range(client, AUDIT)]


async def test_enqueue_job_ends_with_the_broker_push_and_starts_with_the_lease_check(
    make_submission: MakeSubmission, gateway_state: GatewayState
) -> None:
    """With a held Idempotency-Key the lease precondition comes first (nothing runs for a
    request that lost its key) and the broker push comes last (a refused write before it
    leaves nothing queued)."""
    ctx = await _sealed(make_submission, gateway_state, idempotency_key="order")
    writes = enqueue_job(ctx, gateway_state).writes()
    assert (writes[0].command, writes[0].keys) == ("HELD", (ctx.idem_redis_key,))
    assert (writes[-1].command, writes[-1].keys) == ("LPUSH", (STAGE_QUEUE,))
    assert [w.command for w in writes].count("LPUSH") == 1
    vault = [w for w in writes if w.keys[0].startswith(VAULT_PREFIX)]
    assert len(vault) == 1
    assert vault[0].args[1:] == ("EX", str(gateway_state.settings.envelope_ttl))


async def test_enqueue_job_has_no_lease_check_without_an_idempotency_key(
    make_submission: MakeSubmission, gateway_state: GatewayState
) -> None:
    """No key: no precondition and no idempotency record among the writes."""
    ctx = await _sealed(make_submission, gateway_state)
    writes = enqueue_job(ctx, gateway_state).writes()
    assert "HELD" not in [w.command for w in writes]
    assert not [w for w in writes if w.keys[0].startswith("tg:idem:")]


async def test_commit_writes_the_record_indexes_copy_and_broker_message(
    make_submission: MakeSubmission, gateway_state: GatewayState, redis_client: redis.Redis
) -> None:
    """After commit: a queued task record with its TTL, the indexes scored at submission
    time (the reservation moved), the sweeper's copy equal to the broker message, whose
    body is the sealed bytes, and the replay bucket, expiring."""
    ctx = await commit(await _sealed(make_submission, gateway_state), gateway_state)
    tid = ctx.task_id
    record = {as_text(k): as_text(v) for k, v in redis_client.hgetall(task_key(tid)).items()}
    assert record["state"] == "queued"
    assert record["owner"] == ctx.client_id
    assert record["name"] == "stage.touch"
    assert (record["queue"], record["attempts"]) == (STAGE_QUEUE, "0")
    assert "state_mac" in record
    settings = gateway_state.settings
    assert 0 < redis_client.ttl(task_key(tid)) <= settings.envelope_ttl + settings.result_ttl
    for index in (owner_index(ctx.client_id), ALL_TASKS, queued_key(ctx.client_id), GLOBAL_QUEUED):
        assert redis_client.zscore(index, tid) == pytest.approx(ctx.now), index
    (message,) = redis_client.lrange(STAGE_QUEUE, 0, -1)
    assert redis_client.get(message_copy_key(tid)) == message
    document = json.loads(message)
    assert document["headers"]["id"] == tid
    assert base64.b64decode(document["body"]) == ctx.sealed
    seal_exp = ctx.now + gateway_state.codec.ttl
    bucket = replay_bucket(seal_exp)
    assert redis_client.exists(bucket)
    assert redis_client.expiretime(bucket) == replay_bucket_expiry(seal_exp)
    assert len(redis_client.keys(f"{VAULT_PREFIX}{tid}:*")) == 1


async def test_commit_appends_the_allowed_audit_record_for_the_task(
    make_submission: MakeSubmission, gateway_state: GatewayState, redis_client: redis.Redis
) -> None:
    """The decision is in the audit chain, naming client, task id and task name."""
    ctx = await commit(await _sealed(make_submission, gateway_state), gateway_state)
    (record,) = _audit_records(redis_client)
    assert record[b"action"] == b"task.submit"
    assert record[b"outcome"] == b"allowed"
    assert record[b"actor"] == f"client:{ctx.client_id}".encode()
    assert record[b"target"] == ctx.task_id.encode()
    assert record[b"reason"] == b"stage.touch"
    assert record[b"request_id"] == ctx.request_id.encode()


async def test_commit_turns_the_idempotency_reservation_into_a_done_record(
    make_submission: MakeSubmission, gateway_state: GatewayState, redis_client: redis.Redis
) -> None:
    """The pending lease becomes the answer a retry gets, kept for the idempotency TTL."""
    ctx = await commit(
        await _sealed(make_submission, gateway_state, idempotency_key="once"), gateway_state
    )
    key = ctx.idem_redis_key or ""
    assert json.loads(redis_client.get(key) or b"{}") == {
        "state": "done",
        "body": ctx.body_hash,
        "task": "stage.touch",
        "task_id": ctx.task_id,
    }
    assert IDEMPOTENCY_TTL - 60 < redis_client.ttl(key) <= IDEMPOTENCY_TTL


async def test_commit_after_the_lease_was_taken_writes_nothing_and_answers_409(
    make_submission: MakeSubmission, gateway_state: GatewayState, redis_client: redis.Redis
) -> None:
    """Another request holds the key now: 409, no record, vault entry, copy or message;
    the other request's reservation is untouched and this one lets go of the key."""
    ctx = await _sealed(make_submission, gateway_state, idempotency_key="lost")
    key = ctx.idem_redis_key or ""
    theirs = json.dumps({"state": "pending", "body": "b", "task": "stage.touch", "task_id": "x"})
    redis_client.set(key, theirs, px=5000)
    with pytest.raises(ApiError) as err:
        await commit(ctx, gateway_state)
    assert (err.value.status, err.value.kind) == (409, "idempotency-conflict")
    assert ctx.idem_redis_key is None
    assert ctx.idem_pending is None
    assert gateway_state.leases.held() == 0
    assert redis_client.get(key) == theirs.encode()
    assert not redis_client.exists(task_key(ctx.task_id), message_copy_key(ctx.task_id))
    assert not redis_client.keys(f"{VAULT_PREFIX}*")
    assert redis_client.llen(STAGE_QUEUE) == 0


async def test_a_write_redis_refuses_leaves_nothing_runnable(
    make_submission: MakeSubmission, gateway_state: GatewayState, redis_client: redis.Redis
) -> None:
    """The queue key holds a string: LPUSH fails. NotEnqueuedError is raised; the sweeper's
    copy is gone (it would re-queue the task), the record says not_enqueued, and the task
    counts against no queue cap. The 'allowed' record stands."""
    redis_client.set(STAGE_QUEUE, "not a list")
    ctx = await _sealed(make_submission, gateway_state)
    with pytest.raises(NotEnqueuedError):
        await commit(ctx, gateway_state)
    assert redis_client.get(STAGE_QUEUE) == b"not a list"
    assert not redis_client.exists(message_copy_key(ctx.task_id))
    assert redis_client.hget(task_key(ctx.task_id), "state") == b"failed"
    assert redis_client.hget(task_key(ctx.task_id), "error") == b"not_enqueued"
    assert redis_client.zscore(queued_key(ctx.client_id), ctx.task_id) is None
    assert redis_client.zscore(GLOBAL_QUEUED, ctx.task_id) is None
    assert [r[b"outcome"] for r in _audit_records(redis_client)] == [b"allowed"]


async def test_commit_without_redis_raises_an_audit_error_and_accepts_nothing(
    make_submission: MakeSubmission,
    gateway_state: GatewayState,
    unreachable_state: GatewayState,
    redis_client: redis.Redis,
) -> None:
    """The audit append cannot land: AuditError (503 'nothing was accepted'), fail closed."""
    ctx = await _sealed(make_submission, gateway_state)
    with pytest.raises(AuditError):
        await commit(ctx, unreachable_state)
    assert not redis_client.exists(task_key(ctx.task_id), message_copy_key(ctx.task_id))
    assert redis_client.llen(STAGE_QUEUE) == 0
    assert not _audit_records(redis_client)


async def test_commit_without_the_swap_stage_audits_nothing_and_queues_nothing(
    make_submission: MakeSubmission, gateway_state: GatewayState, redis_client: redis.Redis
) -> None:
    """A stage list that skipped ``swap`` has nothing to enqueue: refused before the audit
    append, so no 'allowed' record stands for work that was never queued."""
    ctx = await make_submission("stage.other")
    with pytest.raises(NotEnqueuedError):
        await commit(ctx, gateway_state)
    assert not _audit_records(redis_client)
    assert not redis_client.exists(task_key(ctx.task_id))


async def test_record_best_effort_audits_and_records_in_one_call(
    make_submission: MakeSubmission, gateway_state: GatewayState, redis_client: redis.Redis
) -> None:
    """The best-effort lane's decision and its task record land together: one allowed
    record in the chain and the task record, nothing else outside the audit keys."""
    ctx = await make_submission("stage.best")
    before = {as_bytes(key) for key in redis_client.keys("*")}
    await record_best_effort(ctx, gateway_state)
    (record,) = _audit_records(redis_client)
    assert (record[b"outcome"], record[b"target"]) == (b"allowed", ctx.task_id.encode())
    assert redis_client.hget(task_key(ctx.task_id), "state") == b"queued"
    keys = {as_bytes(key) for key in redis_client.keys("*")}
    assert {k for k in keys - before if not k.startswith(b"tg:audit")} == {
        task_key(ctx.task_id).encode(),
        owner_index(ctx.client_id).encode(),
        ALL_TASKS.encode(),
    }


async def test_record_best_effort_writes_a_task_record_but_no_message(
    make_submission: MakeSubmission, gateway_state: GatewayState, redis_client: redis.Redis
) -> None:
    """Best-effort: a queued record on the best-effort queue with the result TTL, indexed
    for its owner; no broker message, no vault entry, no copy, no queue slot."""
    ctx = await make_submission("stage.best", idempotency_key="be")
    ctx = await run_stages(ctx, gateway_state, BEST_EFFORT_STAGES)
    record = redis_client.hgetall(task_key(ctx.task_id))
    assert (record[b"state"], record[b"queue"]) == (b"queued", b"best-effort")
    assert record[b"owner"] == ctx.client_id.encode()
    assert 0 < redis_client.ttl(task_key(ctx.task_id)) <= gateway_state.settings.result_ttl
    assert redis_client.zscore(owner_index(ctx.client_id), ctx.task_id) is not None
    assert redis_client.zscore(ALL_TASKS, ctx.task_id) is not None
    assert redis_client.zcard(GLOBAL_QUEUED) == 0
    assert not redis_client.exists(message_copy_key(ctx.task_id))
    assert not redis_client.keys(f"{VAULT_PREFIX}*")
    assert not [k for k in redis_client.keys("*") if redis_client.type(k) == b"list"]
    done = json.loads(redis_client.get(ctx.idem_redis_key or "") or b"{}")
    assert (done["state"], done["task_id"]) == ("done", ctx.task_id)
    assert ctx.payload == {"note": "hello", "token": None}


async def test_record_best_effort_without_redis_raises_an_audit_error(
    make_submission: MakeSubmission, unreachable_state: GatewayState
) -> None:
    """No audit record, no task record, no run: the lane fails closed (503)."""
    ctx = await make_submission("stage.best")
    with pytest.raises(AuditError):
        await record_best_effort(ctx, unreachable_state)


async def test_record_best_effort_after_the_lease_was_taken_writes_nothing(
    make_submission: MakeSubmission, gateway_state: GatewayState, redis_client: redis.Redis
) -> None:
    """As on the broker lane: another request holds the key now, so this one is answered
    409 and neither its record nor its claim on the key is written."""
    ctx = await make_submission("stage.best", idempotency_key="be-lost")
    ctx = await run_stages(ctx, gateway_state, BEST_EFFORT_STAGES[:-1])
    key = ctx.idem_redis_key or ""
    theirs = json.dumps({"state": "pending", "body": "b", "task": "stage.best", "task_id": "x"})
    redis_client.set(key, theirs, px=5000)
    refused: ApiError | None = None
    try:
        await record_best_effort(ctx, gateway_state)
    except ApiError as exc:
        refused = exc
    assert redis_client.get(key) == theirs.encode()
    assert not redis_client.exists(task_key(ctx.task_id))
    assert refused is not None
    assert refused.status == 409
