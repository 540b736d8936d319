"""Append audit records to a Redis stream without ever forking or breaking the chain.

Writers in many processes and hosts share one stream (default ``tg:audit``) and one head
key (``<stream>:head`` = ``"<seq> <mac>"``). Each writer keeps its own view of the head,
MACs a batch of records after it locally (the key never reaches Redis) and sends the
batch to one Lua script that appends every entry and moves the head *only if* the head
is still the one the writer expected; otherwise the script returns the real head and the
writer re-chains and retries (compare-and-append). One writer in steady state costs one
round trip per batch; a writer's first append assumes an empty log and learns the head
from the conflict reply.

The script refuses to start a new chain over an existing stream whose head key is gone
(``head_missing``): that is damage for ``taskgate audit verify`` to report, not
something to paper over. The stream and head key must live on one node (no cluster
slot split).
"""

from __future__ import annotations

import asyncio
import random
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any, Final

import redis
import redis.asyncio

from security.audit_chain import (
    EMPTY_HEAD,
    ENTRY_FIELDS,
    AuditEntry,
    AuditRecord,
    Head,
    chain_records,
    parse_head,
    require_audit_keys,
)
from security.errors import AuditError, ConfigError
from security.keys import KeySet, SymmetricKey

__all__ = [
    "DEFAULT_STREAM",
    "MAX_BATCH",
    "AsyncAuditWriter",
    "AuditWriter",
    "aread_head",
    "head_key",
    "read_head",
    "text",
]

DEFAULT_STREAM: Final = "tg:audit"
MAX_BATCH: Final = 256  # entries per script call: bounds how long one call blocks Redis
DEFAULT_ATTEMPTS: Final = 64
_TURN_AFTER: Final = 2  # conflicts in a row before a writer asks for an exclusive turn

# KEYS: stream, head key, turn key. ARGV: expected head, empty-log head, new head, writer
# id, wants-turn flag, field count n, n field names, then n values per entry. Reads come
# first, so a refusal writes nothing. The turn key gives a writer that keeps losing the
# race a short exclusive turn (others get 'wait'), so no process starves under load.
_APPEND_LUA: Final = """
local head = redis.call('GET', KEYS[2])
if not head then
  if redis.call('EXISTS', KEYS[1]) == 1 then return {'missing'} end
  head = ARGV[2]
end
local turn = redis.call('GET', KEYS[3])
if turn and turn ~= ARGV[4] then return {'wait', head} end
if head ~= ARGV[1] then
  if ARGV[5] == '1' and not turn then redis.call('SET', KEYS[3], ARGV[4], 'PX', 250) end
  return {'conflict', head}
end
local n = tonumber(ARGV[6])
local reply = {'ok'}
for i = 7 + n, #ARGV, n do
  local fields = {}
  for j = 0, n - 1 do
    fields[2 * j + 1] = ARGV[7 + j]
    fields[2 * j + 2] = ARGV[i + j]
  end
  reply[#reply + 1] = redis.call('XADD', KEYS[1], '*', unpack(fields))
end
redis.call('SET', KEYS[2], ARGV[3])
if turn then redis.call('DEL', KEYS[3]) end
return reply
"""


def head_key(stream: str) -> str:
    """The key holding ``stream``'s head."""
    return f"{stream}:head"


def text(value: bytes | str) -> str:
    """A Redis reply value as text, whether or not the client decodes responses."""
    # Bytes that are not UTF-8 were not written by a writer: "replace" makes them fail
    # the MAC (or the head parse) instead of crashing the verifier.
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def read_head(client: redis.Redis, stream: str = DEFAULT_STREAM) -> str | None:
    """The raw head value of ``stream`` (None if absent)."""
    raw = client.get(head_key(stream))
    return None if raw is None else text(raw)


async def aread_head(client: redis.asyncio.Redis, stream: str = DEFAULT_STREAM) -> str | None:
    """Asyncio twin of :func:`read_head`."""
    raw = await client.get(head_key(stream))
    return None if raw is None else text(raw)


def _backoff(attempt: int) -> float:
    # The conflict reply carries the new head, so the first retry is immediate; later ones
    # spread out so writers contending in lockstep stop colliding.
    if attempt == 0:
        return 0.0
    return random.uniform(0, min(0.02, 0.0005 * 2**attempt))  # noqa: S311 - jitter, not crypto


def _chunks(records: Sequence[AuditRecord]) -> Iterable[Sequence[AuditRecord]]:
    for start in range(0, len(records), MAX_BATCH):
        yield records[start : start + MAX_BATCH]


class _Chain:
    """The state both writers share: the cached head and the script's arguments/reply."""

    def __init__(self, keys: KeySet[SymmetricKey], stream: str, max_attempts: int) -> None:
        require_audit_keys(keys)
        if max_attempts < 1:
            raise ConfigError("audit max_attempts", "must be at least 1", "pass a positive count")
        self.keys = keys
        self.stream = stream
        self.script_keys = [stream, head_key(stream), f"{stream}:turn"]
        self.writer_id = secrets.token_hex(8)
        self.max_attempts = max_attempts
        self.head = EMPTY_HEAD

    def records(self, records: Iterable[AuditRecord]) -> list[AuditRecord]:
        out = list(records)
        if not all(isinstance(r, AuditRecord) for r in out):
            raise AuditError("only AuditRecord instances can be audited", reason="bad_record")
        return out

    def prepare(
        self, records: Sequence[AuditRecord], *, attempt: int = 0
    ) -> tuple[list[AuditEntry], list[str]]:
        entries = chain_records(self.head, records, self.keys.current())
        new_head = Head(entries[-1].seq, entries[-1].mac)
        args = [self.head.encode(), EMPTY_HEAD.encode(), new_head.encode()]
        args += [self.writer_id, "1" if attempt >= _TURN_AFTER else "0"]
        args += [str(len(ENTRY_FIELDS)), *ENTRY_FIELDS]
        for entry in entries:
            fields = entry.to_fields()
            args += [fields[name] for name in ENTRY_FIELDS]
        return entries, args

    def accept(self, reply: Any, entries: list[AuditEntry]) -> list[AuditEntry] | None:
        """The written entries (with stream ids), or None after learning a newer head."""
        status = text(reply[0]) if isinstance(reply, list) and reply else ""
        if status == "ok" and len(reply) == len(entries) + 1:
            written = [
                replace(e, stream_id=text(i)) for e, i in zip(entries, reply[1:], strict=True)
            ]
            self.head = Head(written[-1].seq, written[-1].mac)
            return written
        if status in {"conflict", "wait"} and len(reply) == 2:
            self.head = parse_head(text(reply[1]))
            return None
        if status == "missing":
            raise AuditError(
                f"audit stream {self.stream} exists but its head key is gone", reason="head_missing"
            )
        raise AuditError("unexpected reply from the audit append script", reason="write_failed")

    def exhausted(self) -> AuditError:
        return AuditError("audit append kept conflicting; giving up", reason="contention")


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
    ) -> None:
        self._chain = _Chain(keys, stream, max_attempts)
        self._script = client.register_script(_APPEND_LUA)
        self._lock = threading.Lock()
        self._sleep = sleep

    def append(self, record: AuditRecord) -> AuditEntry:
        """Append one record; return it as written."""
        return self.append_many([record])[0]

    def append_many(self, records: Iterable[AuditRecord]) -> list[AuditEntry]:
        """Append records in order, up to :data:`MAX_BATCH` per atomic script call."""
        batch = self._chain.records(records)
        with self._lock:
            return [e for chunk in _chunks(batch) for e in self._append_chunk(chunk)]

    def _append_chunk(self, chunk: Sequence[AuditRecord]) -> list[AuditEntry]:
        chain = self._chain
        for attempt in range(chain.max_attempts):
            if delay := _backoff(attempt):
                self._sleep(delay)
            entries, args = chain.prepare(chunk, attempt=attempt)
            try:
                reply = self._script(keys=chain.script_keys, args=args)
            except redis.RedisError as exc:
                raise _redis_failed(exc) from exc
            if (written := chain.accept(reply, entries)) is not None:
                return written
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
        self._chain = _Chain(keys, stream, max_attempts)
        self._script = client.register_script(_APPEND_LUA)
        self._lock = asyncio.Lock()
        self._sleep = sleep

    async def append(self, record: AuditRecord) -> AuditEntry:
        """Append one record; return it as written."""
        return (await self.append_many([record]))[0]

    async def append_many(self, records: Iterable[AuditRecord]) -> list[AuditEntry]:
        """Append records in order, up to :data:`MAX_BATCH` per atomic script call."""
        batch = self._chain.records(records)
        async with self._lock:
            return [e for chunk in _chunks(batch) for e in await self._append_chunk(chunk)]

    async def _append_chunk(self, chunk: Sequence[AuditRecord]) -> list[AuditEntry]:
        chain = self._chain
        for attempt in range(chain.max_attempts):
            if delay := _backoff(attempt):
                await self._sleep(delay)
            entries, args = chain.prepare(chunk, attempt=attempt)
            try:
                reply = await self._script(keys=chain.script_keys, args=args)
            except redis.RedisError as exc:
                raise _redis_failed(exc) from exc
            if (written := chain.accept(reply, entries)) is not None:
                return written
        raise chain.exhausted()
