"""One way onto a broker queue: the audit record, the message and its writes, in one call.

Every path that puts a task's message on a queue - a submission (gateway), a dead letter's
requeue (gateway and operator CLI) and the sweeper's re-queue of a lost message (worker) -
describes it as an :class:`Enqueue` and hands it to the audit chain's append script
(``security/audit/audit_append.lua``): the record is MAC'd locally and appended with
compare-and-append, and the writes run in the same atomic script call right after it, the
push last. So:

* nothing reaches a queue unaudited: if the append fails (Redis unreachable, the head key
  gone over an existing log, a fence that does not hold, contention past the retries),
  nothing at all is written; an append that loses the race for the head re-chains and
  re-sends the whole call, so the writes run once, with the record that won;
* nothing is audited as queued that is not: a write Redis refuses stops the writes after
  it, the push among them, and comes back as :class:`NotEnqueuedError` (the record stands,
  so the caller audits the failure).

The submission hands its :class:`Enqueue` to the gateway's group commit
(``gateway.submission.audit_batcher``: many submissions, one script call); the others commit one
record per call (:func:`enqueue`, :func:`aenqueue`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import redis.asyncio

from security.audit import AsyncAuditWriter, AuditEntry, AuditRecord, AuditWriter, Earlier, Write
from security.audit.append import Item
from security.audit.store import Fence
from workers.contract.keys import GLOBAL_QUEUED, message_copy_key, queued_key, task_key

__all__ = [
    "AsyncCommit",
    "Enqueue",
    "NotEnqueuedError",
    "aenqueue",
    "committer",
    "enqueue",
    "undo_partial_enqueue",
]

# A call that appends one record with its writes and returns the error of the write Redis
# refused (None: all ran), raising if the record itself was not appended:
# ``gateway.submission.audit_batcher.AuditBatcher.record``, or :func:`committer`'s.
AsyncCommit = Callable[[AuditRecord, Sequence[Write]], Awaitable[str | None]]


class NotEnqueuedError(Exception):
    """Redis refused one of the enqueue's writes; the push did not run (the record stands).

    ``reason`` is Redis's error (or ``security.audit.writes.LEASE_LOST``: a ``held``
    precondition did not hold, and none of the writes ran).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"not enqueued: {reason}")
        self.reason = reason


_MESSAGE = Earlier("message")  # the push repeats the copy's message: sent once


@dataclass(frozen=True)
class Enqueue:
    """A task's message pushed onto ``queue``, with the audit record of the decision.

    ``copy_ttl``: also store the sweeper's copy of the message (``tg:msg:{id}``, for that
    many seconds; the message then crosses the network once). ``before`` runs first (a
    ``held`` precondition, vault entries), ``after`` between the copy and the push (task
    record, indexes). ``consuming_end``: ``RPUSH``, the next message a worker pops (a lost
    message going back), instead of ``LPUSH``, behind every message already queued.
    """

    record: AuditRecord
    task_id: str
    queue: str
    message: bytes
    copy_ttl: int | None = None
    before: Sequence[Write] = ()
    after: Sequence[Write] = ()
    consuming_end: bool = False

    def writes(self) -> list[Write]:
        """Every write in order, the push last."""
        writes = list(self.before)
        message: bytes | Earlier = self.message
        if self.copy_ttl is not None:
            copy = Write(
                "SET",
                (message_copy_key(self.task_id),),
                (message, "EX", str(self.copy_ttl)),
                name="message",
            )
            message = _MESSAGE
            writes.append(copy)
        writes += self.after
        writes.append(Write("RPUSH" if self.consuming_end else "LPUSH", (self.queue,), (message,)))
        return writes

    def item(self) -> Item:
        """The record and its writes, as the audit writers take them."""
        return self.record, self.writes()


def enqueue(writer: AuditWriter, job: Enqueue, *, fence: Sequence[Fence] = ()) -> AuditEntry:
    """Append ``job``'s record and run its writes in one atomic script call; the entry.

    ``fence``: conditions checked before anything is written (``AuditError`` ``fenced``
    if one does not hold). Raises ``AuditError`` if the record was not appended (nothing
    was written), :class:`NotEnqueuedError` if Redis refused a write.
    """
    (done,) = writer.commit_many([job.item()], fence=fence)
    if done.write_error is not None:
        raise NotEnqueuedError(done.write_error)
    return done.entry


async def aenqueue(commit: AsyncCommit, job: Enqueue) -> None:
    """Asyncio twin of :func:`enqueue` (no fence), through ``commit``."""
    refused = await commit(job.record, job.writes())
    if refused is not None:
        raise NotEnqueuedError(refused)


def committer(writer: AsyncAuditWriter) -> AsyncCommit:
    """``writer`` as an :data:`AsyncCommit`: one record per script call."""

    async def commit(record: AuditRecord, writes: Sequence[Write]) -> str | None:
        (done,) = await writer.commit_many([(record, writes)])
        return done.write_error

    return commit


async def undo_partial_enqueue(client: redis.asyncio.Redis, task_id: str, owner: str) -> None:
    """After :class:`NotEnqueuedError`: the message was not pushed. Drop the sweeper's copy
    so it is never re-queued, take the task off the queued sets and say so in its record.
    Best effort: the caller reports the failure either way."""
    async with client.pipeline(transaction=True) as pipe:
        pipe.delete(message_copy_key(task_id))
        pipe.hset(task_key(task_id), mapping={"state": "failed", "error": "not_enqueued"})
        if owner:
            pipe.zrem(queued_key(owner), task_id)
        pipe.zrem(GLOBAL_QUEUED, task_id)
        await pipe.execute()
