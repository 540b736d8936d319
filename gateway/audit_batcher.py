"""Group commit for the audit chain: concurrent requests share one append round trip.

Every request that must be audited awaits :meth:`AuditBatcher.record`; a single task per
process drains whatever has queued and appends it as one batch (one EVALSHA), then wakes
every waiter. Under load many records share a round trip; alone, a record costs one.
A request is answered only after its record is in Redis: nothing audited is lost on a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from security.audit import AsyncAuditWriter, AuditRecord

__all__ = ["AuditBatcher"]

log = logging.getLogger("taskgate.audit")
_MAX_BATCH = 256


class AuditBatcher:
    """Queue records, append them in batches, resolve each caller when its batch lands."""

    def __init__(self, writer: AsyncAuditWriter) -> None:
        self._writer = writer
        self._queue: asyncio.Queue[tuple[AuditRecord, asyncio.Future[None]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="audit-batcher")

    async def stop(self) -> None:
        """Flush what is queued, then stop."""
        if self._task is None:
            return
        await self._queue.join()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def record(self, record: AuditRecord) -> None:
        """Append ``record``; returns once it is durably in the chain (raises if it is not)."""
        self.start()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put((record, done))
        await done

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            while len(batch) < _MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._writer.append_many([record for record, _ in batch])
            except Exception as exc:  # noqa: BLE001 - handed to every waiter: fail closed
                log.error("audit append failed: %s", type(exc).__name__)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)
            finally:
                for _ in batch:
                    self._queue.task_done()
