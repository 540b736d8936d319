"""Who wins when a cancellation races the worker: decided in Redis, atomically, both sides.

The gateway's revocation decides on the state Redis holds when its script runs, not on the
record the route read a moment earlier; the worker's success is recorded only if no
revocation arrived first. Both scripts run here against the real TLS Redis.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest
import redis
import redis.asyncio
from pydantic import BaseModel

from gateway.http.errors import ApiError
from gateway.stores.revocation import revoke
from tests.support.replies import as_bytes
from workers.contract.catalogue import Catalogue, TaskSpec
from workers.contract.wire import GLOBAL_QUEUED, done_key, queued_key, revoked_key, task_key
from workers.execution.cancel import finish_unless_revoked

pytestmark = pytest.mark.integration

OWNER = "client-1"


class _Empty(BaseModel):
    pass


def _state(client: redis.asyncio.Redis) -> Any:
    """What ``revoke`` reads from the gateway state: settings, catalogue, Redis."""
    catalogue = Catalogue(
        [
            TaskSpec(name="t.stoppable", schema=_Empty, fn=lambda _: None, cancellable=True),
            TaskSpec(name="t.plain", schema=_Empty, fn=lambda _: None),
        ]
    )
    settings = SimpleNamespace(envelope_ttl=600, result_ttl=600)
    return SimpleNamespace(settings=settings, catalogue=catalogue, redis=client)


async def _record(client: redis.asyncio.Redis, task_id: str, name: str, state: str) -> None:
    await client.hset(task_key(task_id), mapping={"name": name, "owner": OWNER, "state": state})


async def _state_of(client: redis.asyncio.Redis, task_id: str) -> bytes | None:
    state = await client.hget(task_key(task_id), "state")
    return None if state is None else as_bytes(state)


async def test_task_started_after_the_read_is_not_revoked_when_it_may_not_be_interrupted(
    async_redis: redis.asyncio.Redis,
) -> None:
    """Read as queued, started by a worker before the revocation: 409, left running."""
    await _record(async_redis, "a", "t.plain", "started")  # the gate ran after the read
    stale = {"name": "t.plain", "owner": OWNER, "state": "queued"}
    with pytest.raises(ApiError) as refused:
        await revoke(_state(async_redis), "a", stale)
    assert (refused.value.status, refused.value.kind) == (409, "not-cancellable")
    assert await _state_of(async_redis, "a") == b"started"
    assert not await async_redis.exists(revoked_key("a"))


async def test_task_started_after_the_read_is_cancelling_when_cancellable(
    async_redis: redis.asyncio.Redis,
) -> None:
    """Read as queued, started before the revocation, cancellable: cancelling, key stored."""
    await _record(async_redis, "b", "t.stoppable", "started")
    stale = {"name": "t.stoppable", "owner": OWNER, "state": "queued"}
    assert await revoke(_state(async_redis), "b", stale) == "cancelling"
    assert await _state_of(async_redis, "b") == b"cancelling"
    assert await async_redis.exists(revoked_key("b"))
    # Asking again while it stops is answered the same way.
    assert await revoke(_state(async_redis), "b", stale) == "cancelling"


async def test_queued_or_retried_task_is_revoked_outright_and_leaves_the_queued_sets(
    async_redis: redis.asyncio.Redis,
) -> None:
    """Not running (queued, or waiting for a retry): revoked at once, whatever it declares."""
    for task_id, state in (("c", "queued"), ("d", "retried")):
        await _record(async_redis, task_id, "t.plain", state)
        await async_redis.zadd(GLOBAL_QUEUED, {task_id: time.time()})
        await async_redis.zadd(queued_key(OWNER), {task_id: time.time()})
        record = {"name": "t.plain", "owner": OWNER, "state": state}
        assert await revoke(_state(async_redis), task_id, record) == "revoked"
        assert await _state_of(async_redis, task_id) == b"revoked"
        assert await async_redis.exists(revoked_key(task_id))
        assert await async_redis.zscore(GLOBAL_QUEUED, task_id) is None
        assert await async_redis.zscore(queued_key(OWNER), task_id) is None


async def test_task_finished_after_the_read_is_not_revoked(
    async_redis: redis.asyncio.Redis,
) -> None:
    """Read as started, finished before the revocation (revoked counts): 409, nothing stored."""
    for task_id, final in (("e1", "succeeded"), ("e2", "revoked"), ("e3", "dead_lettered")):
        await _record(async_redis, task_id, "t.stoppable", final)
        stale = {"name": "t.stoppable", "owner": OWNER, "state": "started"}
        with pytest.raises(ApiError) as refused:
            await revoke(_state(async_redis), task_id, stale)
        assert (refused.value.status, refused.value.kind) == (409, "finished")
        assert refused.value.detail == f"the task is {final}"
        assert await _state_of(async_redis, task_id) == final.encode()
        assert not await async_redis.exists(revoked_key(task_id))


def test_worker_records_revoked_not_succeeded_when_the_revocation_came_first(
    redis_client: redis.Redis,
) -> None:
    """A cancellable task that returns after its revocation ends revoked: no completion
    record, secrets deleted."""
    redis_client.hset(task_key("f"), mapping={"name": "t.stoppable", "state": "cancelling"})
    redis_client.set(revoked_key("f"), "1")
    redis_client.set("tg:vault:f:1", b"sealed")
    assert not finish_unless_revoked(redis_client, "f", ttl=60, delete=["tg:vault:f:1"])
    assert redis_client.hget(task_key("f"), "state") == b"revoked"
    assert redis_client.hget(task_key("f"), "finished_at")
    assert not redis_client.exists(done_key("f"))
    assert not redis_client.exists("tg:vault:f:1")


def test_worker_records_succeeded_when_no_revocation_came(redis_client: redis.Redis) -> None:
    """Without a revocation: succeeded, with the completion record; secrets deleted."""
    redis_client.hset(task_key("g"), mapping={"name": "t.stoppable", "state": "started"})
    redis_client.set("tg:vault:g:1", b"sealed")
    assert finish_unless_revoked(redis_client, "g", ttl=60, delete=["tg:vault:g:1"])
    assert redis_client.hget(task_key("g"), "state") == b"succeeded"
    assert 0 < redis_client.ttl(done_key("g")) <= 60
    assert not redis_client.exists("tg:vault:g:1")
