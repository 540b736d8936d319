"""Group commit for the audit chain: concurrent requests share one append round trip.

Every request that must be audited awaits :meth:`AuditBatcher.record`; a single task per
process drains whatever has queued and appends it as one batch (one EVALSHA), then wakes
every waiter. Under load many records share a round trip; alone, a record costs one.
A request is answered only after its record is in Redis: nothing audited is lost on a crash.

A record may carry attached writes (a submission's enqueue): they run in the same script
call as the append, so an accepted submission costs its share of one round trip for the
audit record *and* the enqueue together, atomically.

When other writers contend for the chain (several gateway processes: an append lost the
race for the head within the last second) and records are queuing, a batch waits
``delay`` (1 ms by default) to fill, like PostgreSQL's ``commit_delay`` with
``commit_siblings``. Each lost race re-sends its whole batch, so fewer, larger batches
lose far less; a lone request, or a single process, is never delayed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from gateway.background import cancel_and_wait
from security.audit import AsyncAuditWriter, AuditRecord, Write
from security.errors import AuditError

__all__ = ["AuditBatcher"]

log = logging.getLogger("taskgate.audit")
_MAX_BATCH = 256
_CONTENDED_FOR = 1.0  # seconds after a lost race during which batches wait to fill

_Pending = tuple[AuditRecord, Sequence[Write], "asyncio.Future[str | None]"]


class AuditBatcher:
    """Queue records, append them in batches, resolve each caller when its batch lands."""

    def __init__(
        self,
        writer: AsyncAuditWriter,
        *,
        delay: float = 0.001,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._writer = writer
        self._delay = delay
        self._sleep = sleep
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="audit-batcher")

    async def stop(self) -> None:
        """Flush what is queued, then stop."""
        if self._task is None:
            return
        await self._queue.join()
        await cancel_and_wait(self._task)
        self._task = None

    async def record(self, record: AuditRecord, writes: Sequence[Write] = ()) -> str | None:
        """Append ``record`` and run ``writes`` after it, atomically; returns once both are
        in Redis (raises if the record is not), with the error of a write Redis refused."""
        self.start()
        done: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((record, writes, done))
        return await done

    def _contended(self) -> bool:
        return time.monotonic() - self._writer.last_conflict < _CONTENDED_FOR

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            # One loop turn first: requests that are a step from here join this batch
            # (fewer, larger round trips; each socket write is costly). Others already
            # waiting: the gateway is busy, so give the batch a moment to fill.
            await asyncio.sleep(0)
            if self._delay and not self._queue.empty() and self._contended():
                await self._sleep(self._delay)
            batch = [first]
            while len(batch) < _MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                committed = await self._writer.commit_many(
                    [(record, writes) for record, writes, _ in batch]
                )
            except Exception as exc:  # noqa: BLE001 - handed to every waiter: fail closed
                # The reason code only: an arbitrary exception's text could quote data.
                reason = exc.reason if isinstance(exc, AuditError) else "-"
                log.error("audit append failed: %s (%s)", type(exc).__name__, reason)
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for (_, _, future), done in zip(batch, committed, strict=True):
                    if not future.done():
                        future.set_result(done.write_error)
            finally:
                for _ in batch:
                    self._queue.task_done()
