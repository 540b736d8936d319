"""Group commit: a batch waits to fill only while other writers contend and records queue."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from gateway.submission.audit_batcher import AuditBatcher
from security.audit import AuditRecord, Committed, Write

DELAY = 0.004


class FakeWriter:
    """Records each batch it is asked to commit; ``last_conflict`` as the test sets it."""

    def __init__(self, *, contended: bool) -> None:
        self.last_conflict = time.monotonic() if contended else 0.0
        self.batches: list[list[str]] = []

    async def commit_many(self, items: Sequence[tuple[AuditRecord, Sequence[Write]]]) -> list[Any]:
        self.batches.append([record.action for record, _ in items])
        return [Committed(entry=None, write_error=None) for _ in items]  # type: ignore[arg-type]


def record(action: str) -> AuditRecord:
    return AuditRecord.make(actor="client:c", action=action, outcome="ok")


async def run(writer: FakeWriter, first: list[str], arriving: list[str]) -> list[float]:
    """Queue ``first`` together, and ``arriving`` while the batcher waits (if it waits);
    return the waits the batcher took to let a batch fill."""
    waits: list[float] = []
    late: list[asyncio.Future[Any]] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        late.extend(asyncio.ensure_future(batcher.record(record(a))) for a in arriving)
        await asyncio.sleep(seconds)

    batcher = AuditBatcher(writer, delay=DELAY, sleep=sleep)  # type: ignore[arg-type]
    await asyncio.gather(*(batcher.record(record(a)) for a in first))
    await asyncio.gather(*late)
    await batcher.stop()
    return waits


async def test_under_contention_a_queuing_batch_waits_and_takes_the_late_records() -> None:
    """Another writer lost a race lately and records queue: the batch waits once and the
    records that arrive meanwhile ride in it."""
    writer = FakeWriter(contended=True)
    assert await run(writer, ["a", "b"], ["c"]) == [DELAY]
    assert writer.batches == [["a", "b", "c"]]


async def test_a_lone_record_is_never_delayed() -> None:
    """Nothing queued behind it: the record is appended at once, contention or not."""
    writer = FakeWriter(contended=True)
    assert await run(writer, ["a"], ["late"]) == []
    assert writer.batches == [["a"]]


async def test_a_single_writer_never_waits_even_when_records_queue() -> None:
    """No lost race lately (one gateway process): queued records go at once."""
    writer = FakeWriter(contended=False)
    assert await run(writer, ["a", "b"], ["late"]) == []
    assert writer.batches == [["a", "b"]]
