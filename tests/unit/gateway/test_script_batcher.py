"""Concurrent script calls share one pipeline; each caller gets its own reply or error."""

from __future__ import annotations

import asyncio

import pytest
import redis
import redis.asyncio

from gateway.submission.script_batcher import LuaScript, ScriptBatcher

pytestmark = pytest.mark.integration

INCR = LuaScript("return redis.call('INCRBY', KEYS[1], ARGV[1])")
FAIL = LuaScript("return redis.error_reply('refused ' .. ARGV[1])")


async def test_concurrent_calls_each_get_their_own_reply(
    async_redis: redis.asyncio.Redis,
) -> None:
    """Fifty concurrent calls (batched into pipelines): each ran once, each caller got
    its own call's reply."""
    batcher = ScriptBatcher(async_redis)
    try:
        replies = await asyncio.gather(*(batcher.call(INCR, ["n"], [1]) for _ in range(50)))
    finally:
        await batcher.stop()
    assert sorted(replies) == list(range(1, 51))
    assert await async_redis.get("n") == b"50"


async def test_a_failing_call_fails_alone(async_redis: redis.asyncio.Redis) -> None:
    """A script error reaches its own caller; the batch's other calls succeed."""
    batcher = ScriptBatcher(async_redis)
    try:
        results = await asyncio.gather(
            batcher.call(INCR, ["n"], [2]),
            batcher.call(FAIL, [], ["x"]),
            batcher.call(INCR, ["n"], [3]),
            return_exceptions=True,
        )
    finally:
        await batcher.stop()
    assert results[0] in (2, 5)
    assert results[2] in (3, 5)
    assert isinstance(results[1], redis.ResponseError)
    assert "refused x" in str(results[1])


async def test_scripts_are_reloaded_after_redis_forgets_them(
    async_redis: redis.asyncio.Redis,
) -> None:
    """After SCRIPT FLUSH (a restarted Redis) the next calls load the script and run once."""
    batcher = ScriptBatcher(async_redis)
    try:
        assert await batcher.call(INCR, ["n"], [1]) == 1
        await async_redis.script_flush()
        replies = await asyncio.gather(*(batcher.call(INCR, ["n"], [1]) for _ in range(5)))
    finally:
        await batcher.stop()
    assert sorted(replies) == [2, 3, 4, 5, 6]  # each ran exactly once
