"""Concurrent Lua script calls share one pipelined round trip.

redis-py's per-call cost (connection checkout, health check, timeout scope, packing, one
reply parse) was a large part of the gateway's CPU per submission. Requests instead queue
their ``EVALSHA`` here; one task per process sends whatever has queued as one pipeline
(not a transaction: each script is atomic on its own) and hands each caller its reply.
Alone, a call costs one round trip as before; under load many calls share one.

A script Redis does not know (first use, or Redis restarted and lost its script cache) is
loaded and the calls that hit ``NOSCRIPT`` are sent again: a script that ``NOSCRIPT``
refused never ran. A connection error fails the whole batch: each caller gets it.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from typing import Any

import redis.asyncio
from redis.exceptions import NoScriptError

from gateway.background import cancel_and_wait

__all__ = ["LuaScript", "ScriptBatcher"]

_MAX_BATCH = 128


class LuaScript:
    """A Lua script called by its SHA1; its source is loaded when Redis lacks it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


_Call = tuple[LuaScript, Sequence[str], Sequence[Any], "asyncio.Future[Any]"]


class ScriptBatcher:
    """Queue script calls; send them in pipelines; resolve each caller with its reply."""

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self._client = client
        self._queue: asyncio.Queue[_Call] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def call(self, script: LuaScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run ``script`` with ``keys`` and ``args``; its reply (raises what Redis raised)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="script-batcher")
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((script, keys, args, done))
        return await done

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            # One loop turn first: requests that are a step from here join this batch
            # (fewer, larger round trips; each socket write is costly).
            await asyncio.sleep(0)
            while len(batch) < _MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._send(batch)
            except Exception as exc:  # noqa: BLE001 - handed to every waiter
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(exc)

    async def _send(self, batch: list[_Call]) -> None:
        replies = await self._pipeline(batch)
        missing = [call for call, reply in zip(batch, replies, strict=True) if _noscript(reply)]
        if missing:
            for source in {call[0].source for call in missing}:
                await self._client.script_load(source)
            retried = dict(zip(map(id, missing), await self._pipeline(missing), strict=True))
            replies = [retried.get(id(c), r) for c, r in zip(batch, replies, strict=True)]
        for (*_, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _pipeline(self, calls: list[_Call]) -> list[Any]:
        async with self._client.pipeline(transaction=False) as pipe:
            for script, keys, args, _ in calls:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            return list(await pipe.execute(raise_on_error=False))


def _noscript(reply: Any) -> bool:
    return isinstance(reply, NoScriptError) or (
        isinstance(reply, redis.ResponseError) and str(reply).startswith("NOSCRIPT")
    )
