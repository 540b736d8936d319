"""Stage ``check_and_count`` (round trip 1), called directly against the session's Redis:
the client and its token, rate limits, backpressure, idempotency.

On success it sets ``limits``, ``reserved`` and (with an Idempotency-Key) ``idem_pending``;
on refusal it raises a typed error and leaves in the context exactly what the caller must
give back (the reserved queue slot, the pending reservation) and nothing that is not its own.
"""

from __future__ import annotations

import json
import time

import pytest
import redis

from gateway.http.errors import ApiError
from gateway.state import GatewayState
from gateway.stores.checks import revoked_jti_key
from gateway.stores.clients import ClientRegistry
from gateway.submission.checks import RateLimited, check_and_count
from gateway.submission.stages import STAGES, IdempotentReplay, authorize, run_stages
from security.errors import TokenError
from security.keystore import KeyRing
from tests.support.replies import as_text
from tests.support.submissions import MakeSubmission
from workers.contract.wire import GLOBAL_QUEUED, queued_key

WINDOW_KEYS = "tg:rl:*"


def _queued(client: redis.Redis, client_id: str, task_id: str) -> tuple[bool, bool]:
    """Whether ``task_id`` holds a slot in the client's and in the global queued set."""
    return (
        client.zscore(queued_key(client_id), task_id) is not None,
        client.zscore(GLOBAL_QUEUED, task_id) is not None,
    )


async def test_a_passing_check_counts_both_windows_and_reserves_a_queue_slot(
    make_submission: MakeSubmission, gateway_state: GatewayState, redis_client: redis.Redis
) -> None:
    """Limits are evaluated for client and task; the task id takes a slot in both queued
    sets, scored to lapse a minute past the backpressure horizon if no commit follows."""
    ctx = await authorize(await make_submission(), gateway_state)
    ctx = await check_and_count(ctx, gateway_state)
    assert [(s.name, s.limit, s.remaining, s.allowed) for s in ctx.limits] == [
        ("client", 120, 119, True),
        ("task", 120, 119, True),
    ]
    assert ctx.reserved
    assert _queued(redis_client, ctx.client_id, ctx.task_id) == (True, True)
    score = redis_client.zscore(GLOBAL_QUEUED, ctx.task_id)
    assert score == pytest.approx(ctx.now - gateway_state.settings.envelope_ttl + 60)
    windows = sorted(redis_client.keys(WINDOW_KEYS))
    assert [int(redis_client.get(k) or 0) for k in windows] == [1, 1]
    assert all(0 < redis_client.ttl(k) <= 120 for k in windows)
    assert ctx.idem_pending is None
    assert not redis_client.keys("tg:idem:*")


async def test_a_best_effort_check_counts_but_reserves_no_slot(
    make_submission: MakeSubmission, gateway_state: GatewayState, redis_client: redis.Redis
) -> None:
    """The best-effort lane never reaches the broker: no queue slot to hold."""
    ctx = await authorize(await make_submission("stage.best"), gateway_state)
    ctx = await check_and_count(ctx, gateway_state)
    assert not ctx.reserved
    assert redis_client.zcard(GLOBAL_QUEUED) == 0
    assert len(redis_client.keys(WINDOW_KEYS)) == 2


async def test_an_idempotency_key_is_reserved_with_a_short_lease(
    make_submission: MakeSubmission, gateway_state: GatewayState, redis_client: redis.Redis
) -> None:
    """The first request under a key writes its pending record, held (renewed) by this
    process, expiring within the lease rather than the idempotency TTL."""
    ctx = await authorize(await make_submission(idempotency_key="k-1"), gateway_state)
    ctx = await check_and_count(ctx, gateway_state)
    assert ctx.idem_redis_key is not None
    assert ctx.idem_pending is not None
    stored = json.loads(redis_client.get(ctx.idem_redis_key) or b"{}")
    assert stored == {
        "state": "pending",
        "body": ctx.body_hash,
        "task": "stage.touch",
        "task_id": ctx.task_id,
    }
    assert 0 < redis_client.pttl(ctx.idem_redis_key) <= gateway_state.leases.lease_ms
    assert gateway_state.leases.held() == 1


async def test_an_unknown_client_is_refused_before_anything_is_counted(
    make_submission: MakeSubmission, gateway_state: GatewayState, redis_client: redis.Redis
) -> None:
    """A token for a client with no record: TokenError, no window counted, no slot taken."""
    ctx = await authorize(await make_submission(client_id="ghost-00000000"), gateway_state)
    with pytest.raises(TokenError) as err:
        await check_and_count(ctx, gateway_state)
    assert err.value.reason == "client_disabled"
    assert not ctx.reserved
    assert not redis_client.keys(WINDOW_KEYS)
    assert redis_client.zcard(GLOBAL_QUEUED) == 0


async def test_a_disabled_client_is_refused_and_its_slot_is_named_for_release(
    make_submission: MakeSubmission,
    gateway_state: GatewayState,
    async_redis: redis.asyncio.Redis,
    keyring: KeyRing,
    redis_client: redis.Redis,
) -> None:
    """The script cannot read the disabled flag's MAC, so it may reserve; the refusal leaves
    ``reserved`` and ``idem_pending`` set exactly when there is something to give back."""
    ctx = await authorize(await make_submission(idempotency_key="k-d"), gateway_state)
    await ClientRegistry(async_redis, keyring.state).disable(ctx.client_id)
    with pytest.raises(TokenError) as err:
        await check_and_count(ctx, gateway_state)
    assert err.value.reason == "client_disabled"
    assert _queued(redis_client, ctx.client_id, ctx.task_id) == (ctx.reserved, ctx.reserved)
    assert ctx.idem_redis_key is not None
    assert as_text(redis_client.get(ctx.idem_redis_key) or b"") == ctx.idem_pending


async def test_a_revoked_token_is_refused_and_takes_no_slot(
    make_submission: MakeSubmission, gateway_state: GatewayState, redis_client: redis.Redis
) -> None:
    """A revoked jti is a TokenError (revoked); the script reserves nothing for it."""
    ctx = await authorize(await make_submission(), gateway_state)
    redis_client.set(revoked_jti_key(ctx.jti), "1", ex=600)
    with pytest.raises(TokenError) as err:
        await check_and_count(ctx, gateway_state)
    assert err.value.reason == "revoked"
    assert not ctx.reserved
    assert _queued(redis_client, ctx.client_id, ctx.task_id) == (False, False)


async def test_a_token_from_before_a_secret_rotation_is_refused_as_stale(
    make_submission: MakeSubmission,
    gateway_state: GatewayState,
    async_redis: redis.asyncio.Redis,
    keyring: KeyRing,
) -> None:
    """Rotating the client's secret raises its generation: older tokens stop working."""
    ctx = await authorize(await make_submission(), gateway_state)
    await ClientRegistry(async_redis, keyring.state).rotate_secret(ctx.client_id)
    with pytest.raises(TokenError) as err:
        await check_and_count(ctx, gateway_state)
    assert err.value.reason == "stale"


async def test_a_tampered_client_record_is_refused(
    make_submission: MakeSubmission, gateway_state: GatewayState, redis_client: redis.Redis
) -> None:
    """A record whose state MAC fails (a raised rate limit written straight to Redis) is
    refused as a token failure naming the client record, and nothing is counted."""
    ctx = await authorize(await make_submission(), gateway_state)
    redis_client.hset(f"tg:client:{ctx.client_id}", "rate_limit", "100000/second")
    with pytest.raises(TokenError) as err:
        await check_and_count(ctx, gateway_state)
    assert err.value.reason.startswith("client_")
    assert "100000" not in str(err.value)
    assert not redis_client.keys(WINDOW_KEYS)


async def test_the_task_rate_limit_refuses_with_headers_and_no_slot(
    make_submission: MakeSubmission, gateway_state: GatewayState, redis_client: redis.Redis
) -> None:
    """stage.tight allows 2 a minute: the third is RateLimited (429, Retry-After and
    RateLimit-*), its context shows which window refused, and it holds no slot."""
    first = await make_submission("stage.tight")
    for _ in range(2):
        ctx = await make_submission("stage.tight", client_id=first.client_id)
        await check_and_count(await authorize(ctx, gateway_state), gateway_state)
    ctx = await authorize(
        await make_submission("stage.tight", client_id=first.client_id), gateway_state
    )
    with pytest.raises(RateLimited) as err:
        await check_and_count(ctx, gateway_state)
    assert (err.value.status, err.value.kind) == (429, "rate-limited")
    assert "task" in err.value.detail
    headers = err.value.headers or {}
    assert int(headers["Retry-After"]) > 0
    assert headers["RateLimit-Remaining"] == "0"
    assert [s.allowed for s in ctx.limits] == [True, False]
    assert not ctx.reserved
    assert _queued(redis_client, ctx.client_id, ctx.task_id) == (False, False)


async def test_the_client_rate_limit_refuses_across_tasks(
    make_submission: MakeSubmission, gateway_state: GatewayState
) -> None:
    """A client limited to 1 a minute is refused on its second task, whichever task it is."""
    first = await make_submission(rate_limit="1/minute")
    await check_and_count(await authorize(first, gateway_state), gateway_state)
    second = await make_submission("stage.other", client_id=first.client_id)
    with pytest.raises(RateLimited, match=r"\(client\)"):
        await check_and_count(await authorize(second, gateway_state), gateway_state)
    assert not second.reserved


async def test_the_per_client_queue_cap_refuses_with_429(
    make_submission: MakeSubmission, gateway_state: GatewayState, redis_client: redis.Redis
) -> None:
    """With max_queued=1 and one task queued, the next is 429 backpressure (Retry-After 5)."""
    first = await make_submission(max_queued=1)
    await run_stages(first, gateway_state)
    ctx = await authorize(await make_submission(client_id=first.client_id), gateway_state)
    with pytest.raises(ApiError) as err:
        await check_and_count(ctx, gateway_state)
    assert (err.value.status, err.value.kind) == (429, "backpressure")
    assert (err.value.headers or {})["Retry-After"] == "5"
    assert not ctx.reserved
    assert redis_client.zcard(queued_key(first.client_id)) == 1


async def test_the_global_queue_cap_refuses_with_503(
    make_submission: MakeSubmission, gateway_state: GatewayState, redis_client: redis.Redis
) -> None:
    """At the gateway-wide cap every client is refused: 503 backpressure, Retry-After 10."""
    cap = gateway_state.settings.max_queued_global
    now = time.time()
    redis_client.zadd(GLOBAL_QUEUED, {f"other-{i}": now for i in range(cap)})
    ctx = await authorize(await make_submission(), gateway_state)
    with pytest.raises(ApiError) as err:
        await check_and_count(ctx, gateway_state)
    assert (err.value.status, err.value.kind) == (503, "backpressure")
    assert (err.value.headers or {})["Retry-After"] == "10"
    assert not ctx.reserved
    assert redis_client.zcard(GLOBAL_QUEUED) == cap


async def test_a_repeated_key_and_body_after_acceptance_is_an_idempotent_replay(
    make_submission: MakeSubmission, gateway_state: GatewayState, redis_client: redis.Redis
) -> None:
    """The earlier task's id comes back in IdempotentReplay; the record is not this
    request's to touch, and no second slot is taken."""
    first = await run_stages(await make_submission(idempotency_key="same"), gateway_state)
    stored = redis_client.get(first.idem_redis_key or "")
    again = await make_submission(idempotency_key="same", client_id=first.client_id)
    with pytest.raises(IdempotentReplay) as err:
        await run_stages(again, gateway_state)
    assert err.value.task_id == first.task_id
    assert again.idem_redis_key is None
    assert again.idem_pending is None
    assert not again.reserved
    assert redis_client.get(first.idem_redis_key or "") == stored
    assert redis_client.zcard(GLOBAL_QUEUED) == 1


async def test_a_repeated_key_while_the_first_is_in_flight_is_a_409(
    make_submission: MakeSubmission, gateway_state: GatewayState, redis_client: redis.Redis
) -> None:
    """The first request's pending reservation stands; the second gets 409 (Retry-After 1)
    and keeps no claim on the key."""
    first = await check_and_count(
        await authorize(await make_submission(idempotency_key="busy"), gateway_state),
        gateway_state,
    )
    ctx = await make_submission(idempotency_key="busy", client_id=first.client_id)
    with pytest.raises(ApiError) as err:
        await check_and_count(await authorize(ctx, gateway_state), gateway_state)
    assert (err.value.status, err.value.kind) == (409, "idempotency-conflict")
    assert (err.value.headers or {})["Retry-After"] == "1"
    assert ctx.idem_redis_key is None
    assert ctx.idem_pending is None
    assert as_text(redis_client.get(first.idem_redis_key or "") or b"") == first.idem_pending


@pytest.mark.parametrize(
    ("task", "body", "detail"),
    [
        ("stage.touch", b'{"note": "different"}', "different request body"),
        ("stage.other", b'{"note": "hello"}', "another task"),
    ],
)
async def test_a_reused_key_with_another_body_or_task_is_a_422(
    make_submission: MakeSubmission,
    gateway_state: GatewayState,
    redis_client: redis.Redis,
    task: str,
    body: bytes,
    detail: str,
) -> None:
    """The key is bound to its first body and task: a mismatch is 422 idempotency-mismatch,
    and the accepted record is left as it was."""
    first = await run_stages(await make_submission(idempotency_key="bound"), gateway_state)
    stored = redis_client.get(first.idem_redis_key or "")
    ctx = await make_submission(task, body=body, idempotency_key="bound", client_id=first.client_id)
    with pytest.raises(ApiError, match=detail) as err:
        await check_and_count(await authorize(ctx, gateway_state), gateway_state)
    assert (err.value.status, err.value.kind) == (422, "idempotency-mismatch")
    assert ctx.idem_redis_key is None
    assert redis_client.get(first.idem_redis_key or "") == stored


async def test_the_same_key_from_another_client_is_independent(
    make_submission: MakeSubmission, gateway_state: GatewayState
) -> None:
    """Idempotency keys are per client: another client's identical key is a new request."""
    first = await run_stages(await make_submission(idempotency_key="shared"), gateway_state)
    other = await run_stages(await make_submission(idempotency_key="shared"), gateway_state)
    assert other.task_id != first.task_id
    assert other.idem_redis_key != first.idem_redis_key


async def test_an_unreachable_redis_raises_a_redis_error_and_reserves_nothing(
    make_submission: MakeSubmission, unreachable_state: GatewayState
) -> None:
    """No Redis: a RedisError (mapped to 503 'nothing was accepted'); the context claims
    no slot and no idempotency reservation."""
    ctx = await make_submission(idempotency_key="k-down")
    with pytest.raises(redis.RedisError):
        await run_stages(ctx, unreachable_state, STAGES[:2])
    assert not ctx.reserved
    assert ctx.idem_pending is None
    assert ctx.limits == []
