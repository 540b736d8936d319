"""Append audit records to a Redis stream without ever forking or breaking the chain.

Writers in many processes and hosts share one stream (default ``tg:audit``) and one head
key (``<stream>:head`` = ``"<seq> <mac>"``). Each writer keeps its own view of the head,
MACs a batch of records after it locally (the key never reaches Redis) and sends the
batch to one Lua script that appends every entry and moves the head *only if* the head
is still the one the writer expected; otherwise the script returns the real head and the
writer re-chains and retries (compare-and-append). One writer in steady state costs one
round trip per batch; a writer's first append assumes an empty log and learns the head
from the conflict reply.

A record may carry *attached writes* (:class:`Write`): Redis commands the same script
runs right after the append, so that a decision and what it allows land together or not
at all (the gateway's submission: the ``allowed`` record and the enqueue are one atomic
call, and under load one call for many submissions). A write runs only if the append
succeeded; a record's writes run in order and stop at the first that Redis refuses, whose
error comes back for that record alone (its audit entry stands: the caller audits the
failure).

The script refuses to start a new chain over an existing stream whose head key is gone
(``head_missing``): that is damage for ``taskgate audit verify`` to report, not
something to paper over. The stream and head key must live on one node (no cluster
slot split).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Final

import redis
import redis.asyncio

from security.audit.append import Chain, Item, head_key, text, turn_key
from security.audit.chain import EMPTY_HEAD, AuditEntry, AuditRecord, Head
from security.audit.head_slot import HeadSlot
from security.audit.writes import Committed, Earlier, Write, pack
from security.errors import AuditError
from security.keys import KeySet, SymmetricKey
from security.lua import lua_script

__all__ = [
    "DEFAULT_STREAM",
    "MAX_BATCH",
    "AsyncAuditWriter",
    "AuditWriter",
    "Committed",
    "Earlier",
    "Fence",
    "Write",
    "aread_head",
    "head_key",
    "read_head",
    "text",
    "turn_key",
]

DEFAULT_STREAM: Final = "tg:audit"
MAX_BATCH: Final = 256  # entries per script call: bounds how long one call blocks Redis
DEFAULT_ATTEMPTS: Final = 64


# A condition a fenced commit checks before writing: (key, field, value): HGET must match
# (an absent field matches "").
Fence = tuple[str, str, str]

# The append script (see the comment at its top): one atomic call appends a batch of
# records, moves the head and runs each record's attached writes.
_APPEND_LUA: Final = lua_script("security.audit", "audit_append.lua")


def read_head(client: redis.Redis, stream: str = DEFAULT_STREAM) -> str | None:
    """The raw head value of ``stream`` (None if absent)."""
    raw = client.get(head_key(stream))
    return None if raw is None else text(raw)


async def aread_head(client: redis.asyncio.Redis, stream: str = DEFAULT_STREAM) -> str | None:
    """Asyncio twin of :func:`read_head`."""
    raw = await client.get(head_key(stream))
    return None if raw is None else text(raw)


def _backoff(waits: int) -> float:
    """The pause before the next attempt, after ``waits`` 'wait' replies in a row.

    Only a 'wait' is waited out: another writer holds the turn and uses it at once, within
    about one round trip, so the pause starts under a millisecond and grows (jittered, so
    waiters spread out) up to 20 ms, for a holder that died and left its turn to lapse. A
    conflict is never waited out: it means another writer appended, its reply carries the
    new head, and after ``security.audit.append.TURN_AFTER`` of them in a row the writer
    takes the turn. (A writer that slept after conflicts held its turn through the sleep -
    up to 20 ms in which every other writer was told to wait and slept in turn: two worker
    pool processes could pass such pauses back and forth for a tenth of a second at a time.)
    """
    if waits <= 0:
        return 0.0
    return random.uniform(0, min(0.02, 0.00025 * 2**waits))  # noqa: S311 - jitter, not crypto


def _chunks(items: Sequence[Item]) -> Iterable[Sequence[Item]]:
    for start in range(0, len(items), MAX_BATCH):
        yield items[start : start + MAX_BATCH]


def _redis_failed(exc: redis.RedisError) -> AuditError:
    # A ResponseError is Redis refusing the script (wrong key type, memory, ACL); anything
    # else is the connection, after which the entries may or may not have been written.
    if isinstance(exc, redis.ResponseError):
        return AuditError(
            f"audit append refused by Redis ({type(exc).__name__})", reason="write_failed"
        )
    return AuditError(f"audit log unavailable ({type(exc).__name__})", reason="unavailable")


class AuditWriter:
    """Append records to the audit stream from synchronous code (thread-safe).

    ``keys`` MAC new entries with their newest live key. Raises :class:`AuditError`:
    ``unavailable`` (connection lost: the entries may or may not have been written; a
    later append re-learns the head, so the chain stays whole), ``write_failed`` (Redis
    refused the script), ``contention`` (still conflicting after ``max_attempts``),
    ``head_missing``, ``bad_head``, ``bad_record``.
    """

    def __init__(
        self,
        client: redis.Redis,
        keys: KeySet[SymmetricKey],
        *,
        stream: str = DEFAULT_STREAM,
        max_attempts: int = DEFAULT_ATTEMPTS,
        sleep: Callable[[float], None] = time.sleep,
        shared: HeadSlot | None = None,
    ) -> None:
        self._chain = Chain(keys, stream, max_attempts)
        self._script = client.register_script(_APPEND_LUA)
        self._lock = threading.Lock()
        self._sleep = sleep
        self._shared = shared  # heads announced by writers of this process tree

    def counts(self) -> tuple[int, int]:
        """(records appended, appends that conflicted) by this writer so far."""
        return self._chain.appended, self._chain.conflicts

    def append(self, record: AuditRecord) -> AuditEntry:
        """Append one record; return it as written."""
        return self.append_many([record])[0]

    def observe_head(self, raw: str | None) -> None:
        """Learn the head from a value read elsewhere, if newer (see ``Chain.observe``)."""
        with self._lock:
            self._chain.observe(raw)

    def append_many(self, records: Iterable[AuditRecord]) -> list[AuditEntry]:
        """Append records in order, up to :data:`MAX_BATCH` per atomic script call."""
        return [done.entry for done in self.commit_many((r, ()) for r in records)]

    def commit_many(self, items: Iterable[Item], *, fence: Sequence[Fence] = ()) -> list[Committed]:
        """Append records, each with its attached writes, up to :data:`MAX_BATCH` per call.

        ``fence``: (key, field, value) conditions checked in the same script before
        anything is written; if one does not hold (``HGET key field`` is not ``value``; an
        absent field is ``""``),
        nothing is appended and :class:`AuditError` ``fenced`` is raised. Fenced commits
        take one chunk (at most :data:`MAX_BATCH` records).
        """
        batch = self._chain.items(items)
        if fence and len(batch) > MAX_BATCH:
            raise AuditError("a fenced commit takes one chunk of records", reason="bad_record")
        packed = pack([list(condition) for condition in fence]) if fence else b""
        with self._lock:
            return [done for chunk in _chunks(batch) for done in self._commit_chunk(chunk, packed)]

    def _commit_chunk(self, chunk: Sequence[Item], fence: bytes = b"") -> list[Committed]:
        chain = self._chain
        shared = self._shared
        writes = chain.pack_writes(chunk)
        waits = 0
        for attempt in range(chain.max_attempts):
            if delay := _backoff(waits):
                self._sleep(delay)
            if shared is not None and attempt == 0:
                announced = shared.read()  # another writer's batch, likely ahead of ours
                if announced is not None and announced.seq > chain.head.seq:
                    chain.head = announced
            entries, keys, args = chain.prepare(chunk, writes, attempt=attempt, fence=fence)
            promised = Head(entries[-1].seq, entries[-1].mac)
            if shared is not None:
                shared.announce(promised)
            try:
                reply = self._script(keys=keys, args=args)
            except redis.RedisError as exc:
                if shared is not None:
                    shared.withdraw(promised, EMPTY_HEAD)
                raise _redis_failed(exc) from exc
            written = chain.accept(reply, entries)
            if not isinstance(written, str):
                return written
            if shared is not None:
                shared.withdraw(promised, chain.head)
            waits = waits + 1 if written == "wait" else 0
        raise chain.exhausted()


class AsyncAuditWriter:
    """Append records to the audit stream from asyncio code; see :class:`AuditWriter`.

    Coroutines sharing one writer are serialised by a lock (no self-inflicted
    conflicts); writers in other tasks, processes or hosts are reconciled by the script.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis,
        keys: KeySet[SymmetricKey],
        *,
        stream: str = DEFAULT_STREAM,
        max_attempts: int = DEFAULT_ATTEMPTS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._chain = Chain(keys, stream, max_attempts)
        self._script = client.register_script(_APPEND_LUA)
        self._lock = asyncio.Lock()
        self._sleep = sleep
        #: ``time.monotonic()`` when an append last lost the race for the head to another
        #: writer (0.0: never) - a sign that batching harder would pay (``AuditBatcher``).
        self.last_conflict = 0.0

    def counts(self) -> tuple[int, int]:
        """(records appended, appends that conflicted) by this writer so far."""
        return self._chain.appended, self._chain.conflicts

    async def append(self, record: AuditRecord) -> AuditEntry:
        """Append one record; return it as written."""
        return (await self.append_many([record]))[0]

    async def append_many(self, records: Iterable[AuditRecord]) -> list[AuditEntry]:
        """Append records in order, up to :data:`MAX_BATCH` per atomic script call."""
        return [done.entry for done in await self.commit_many((r, ()) for r in records)]

    async def commit_many(self, items: Iterable[Item]) -> list[Committed]:
        """Append records, each with its attached writes, up to :data:`MAX_BATCH` per call."""
        batch = self._chain.items(items)
        async with self._lock:
            return [done for chunk in _chunks(batch) for done in await self._commit_chunk(chunk)]

    async def _commit_chunk(self, chunk: Sequence[Item]) -> list[Committed]:
        chain = self._chain
        writes = chain.pack_writes(chunk)
        waits = 0
        for attempt in range(chain.max_attempts):
            if delay := _backoff(waits):
                await self._sleep(delay)
            entries, keys, args = chain.prepare(chunk, writes, attempt=attempt)
            try:
                reply = await self._script(keys=keys, args=args)
            except redis.RedisError as exc:
                raise _redis_failed(exc) from exc
            written = chain.accept(reply, entries)
            if not isinstance(written, str):
                return written
            waits = waits + 1 if written == "wait" else 0
            self.last_conflict = time.monotonic()
        raise chain.exhausted()
