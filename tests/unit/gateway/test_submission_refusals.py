"""The stage runner accounts for a refusal by the error's row: it frees what the request
took, appends the audit record and counts the metric labels - the route does none of it."""

from __future__ import annotations

import json

import pytest
import redis

from gateway.http.problems import RateLimited
from gateway.state import GatewayState
from gateway.submission.stages import run_stages
from security.errors import LeakDetectedError
from tests.support.replies import as_fields, stream_range
from tests.support.submissions import MakeSubmission
from workers.contract import metrics as m
from workers.contract.wire import GLOBAL_QUEUED, queued_key

AUDIT = "tg:audit"
CANARY = "Bearer eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LWNhbmFyeQ.c2lnbmF0dXJl"


def _records(client: redis.Redis, client_id: str) -> list[dict[bytes, bytes]]:
    """This client's records (a session's other servers may append to the chain too)."""
    actor = f"client:{client_id}".encode()
    records = [as_fields(fields) for _, fields in stream_range(client, AUDIT)]
    return [fields for fields in records if fields.get(b"actor") == actor]


def _denied(client: redis.Redis, client_id: str) -> list[dict[bytes, bytes]]:
    return [f for f in _records(client, client_id) if f.get(b"outcome") == b"denied"]


def _counts(state: GatewayState) -> dict[tuple[str, ...], int]:
    return {tuple(key.split(m.SEP)): by for key, by in state.metrics.buffer.drain().items()}


async def test_a_leak_refusal_is_audited_counted_and_frees_its_key_and_slot(
    make_submission: MakeSubmission, gateway_state: GatewayState, redis_client: redis.Redis
) -> None:
    """task.submit denied with 'leak_detected at <field>'; counted as outcome leak_detected
    and check leak_guard; the Idempotency-Key and the reserved queue slot are given back."""
    body = json.dumps({"note": CANARY}).encode()
    ctx = await make_submission("stage.other", body=body, idempotency_key="leaky")
    gateway_state.metrics.buffer.drain()
    with pytest.raises(LeakDetectedError):
        await run_stages(ctx, gateway_state)
    (record,) = _denied(redis_client, ctx.client_id)
    assert record[b"action"] == b"task.submit"
    assert record[b"target"] == b"stage.other"
    assert record[b"reason"] == b"leak_detected at note"
    counts = _counts(gateway_state)
    assert counts[(m.SUBMISSIONS.name, "stage.other", "leak_detected")] == 1
    assert counts[(m.INPUT_REFUSALS.name, "stage.other", "leak_guard")] == 1
    assert not [key for key in counts if key[0] == m.LIMIT_REFUSALS.name]
    assert redis_client.get(ctx.idem_redis_key or "") is None
    assert gateway_state.leases.held() == 0
    assert redis_client.zscore(queued_key(ctx.client_id), ctx.task_id) is None
    assert redis_client.zscore(GLOBAL_QUEUED, ctx.task_id) is None
    for fields in stream_range(redis_client, AUDIT):
        assert CANARY.encode() not in repr(fields).encode()


async def test_a_rate_limited_submission_is_a_rate_limit_hit_by_its_window(
    make_submission: MakeSubmission, gateway_state: GatewayState, redis_client: redis.Redis
) -> None:
    """Over stage.tight's 2 a minute: audited as rate_limit.hit (reason rate-limited), counted
    under the task window's scope; the answer keeps its own RateLimit headers."""
    first = await run_stages(await make_submission("stage.tight"), gateway_state)
    await run_stages(await make_submission("stage.tight", client_id=first.client_id), gateway_state)
    third = await make_submission("stage.tight", client_id=first.client_id)
    gateway_state.metrics.buffer.drain()
    with pytest.raises(RateLimited) as err:
        await run_stages(third, gateway_state)
    (record,) = [
        f
        for f in _denied(redis_client, first.client_id)
        if f[b"request_id"] == third.request_id.encode()
    ]
    assert (record[b"action"], record[b"reason"]) == (b"rate_limit.hit", b"rate-limited")
    counts = _counts(gateway_state)
    assert counts[(m.SUBMISSIONS.name, "stage.tight", "rate-limited")] == 1
    assert counts[(m.LIMIT_REFUSALS.name, "task")] == 1
    assert (err.value.headers or {})["RateLimit-Remaining"] == "0"


async def test_an_accepted_run_audits_no_refusal(
    make_submission: MakeSubmission, gateway_state: GatewayState, redis_client: redis.Redis
) -> None:
    """A run that passes every stage leaves only its 'allowed' record and lets go of its key."""
    ctx = await run_stages(await make_submission(idempotency_key="fine"), gateway_state)
    assert [f[b"outcome"] for f in _records(redis_client, ctx.client_id)] == [b"allowed"]
    assert gateway_state.leases.held() == 0
    assert json.loads(redis_client.get(ctx.idem_redis_key or "") or b"{}")["state"] == "done"
