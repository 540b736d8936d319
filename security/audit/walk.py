"""Bounded and incremental verification of the live audit stream.

:func:`security.audit.verify` walks the whole stream from its first entry. These walks
start where a caller says and may stop after ``limit`` entries:

* from the first live entry, linking to ``start`` (:data:`EMPTY_HEAD` for an untrimmed
  log, the head of the signed checkpoint that closed the archive for a trimmed one);
* from an anchor (``resume``): the entry at the anchor's stream id must be exactly the
  checkpointed ``(seq, mac)`` (else the log was cut or rewritten there: ``truncated`` or
  ``checkpoint_mismatch``), and the walk verifies only what came after it;
* after a cursor (``after``): an entry that must itself verify, then what follows it;
  how a bounded caller (the HTTP verify) resumes where its last page stopped.

A walk that stopped at ``limit`` is judged on what it read (``complete`` is False); one
that reached the end also checks the head key and the pinned checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio

from security.audit.chain import EMPTY_HEAD, AuditKeys, Head, parse_entry
from security.audit.read import entry_fields, unavailable
from security.audit.store import DEFAULT_STREAM, read_head, text
from security.audit.verifier import BadRecord, ChainVerifier, VerifyReport
from security.errors import AuditError

__all__ = ["WalkReport", "averify_walk", "verify_walk"]

PAGE = 500


@dataclass(frozen=True, slots=True)
class WalkReport:
    """A walk's verdict, where it started (``first_seq``), the stream id of the last
    entry it verified (a cursor to go on from) and whether it reached the end."""

    report: VerifyReport
    first_seq: int
    last_id: str | None
    complete: bool

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict: the report's fields plus ``first_seq``, ``next``, ``complete``."""
        out = self.report.to_dict()
        out |= {"first_seq": self.first_seq, "complete": self.complete}
        out["next"] = None if self.complete else self.last_id
        return out


class _Walk:
    """The state a sync or asyncio walk shares."""

    def __init__(
        self,
        keys: AuditKeys,
        stream: str,
        *,
        start: Head,
        pinned: Head | None,
        limit: int | None,
    ) -> None:
        if limit is not None and limit < 1:
            raise AuditError("a walk's limit must be positive", reason="bad_query")
        self.keys, self.stream, self.start, self.pinned = keys, stream, start, pinned
        self.limit = limit
        self.lower = "-"
        self.last_id: str | None = None
        self.read = 0
        self.verifier: ChainVerifier | None = None
        self.early: str | None = None
        self.failed: BadRecord | None = None

    def begin(self, early: str | None) -> None:
        self.early = early
        self.verifier = ChainVerifier(
            self.keys, stream=self.stream, head=early, pinned=self.pinned, start=self.start
        )

    def resume_at(self, stream_id: str, raw: list[Any] | None, expect: Head | None) -> None:
        """Check the entry a resume starts at; on success the walk goes on after it."""
        seq = "?" if expect is None else str(expect.seq)
        gone = f"record {seq} (stream id {stream_id}) is gone: records up to {seq} are missing"
        if not raw:
            self.failed = BadRecord(0, stream_id, "truncated", gone)
            return
        sid, fields = entry_fields(raw[0])
        try:
            entry = parse_entry(sid, fields)
        except AuditError:
            self.failed = BadRecord(0, sid, "malformed")
            return
        if sid != stream_id:
            self.failed = BadRecord(0, stream_id, "truncated", gone)
            return
        if expect is not None:
            if (entry.seq, entry.mac) != (expect.seq, expect.mac):
                self.failed = BadRecord(0, sid, "checkpoint_mismatch")
                return
            self.start = expect
        else:  # a cursor: the entry must verify on its own
            probe = ChainVerifier(
                self.keys, stream=self.stream, head=None, start=Head(entry.seq - 1, entry.prev)
            )
            if not probe.feed(sid, fields):
                self.failed = probe.finish(None, complete=False).first_bad
                return
            self.start = Head(entry.seq, entry.mac)
        self.lower = f"({sid}"
        self.last_id = sid

    def count(self) -> int:
        return PAGE if self.limit is None else min(PAGE, self.limit - self.read)

    def feed(self, page: list[Any]) -> bool:
        """Feed a page; True to read on."""
        verifier = self.verifier
        if verifier is None:
            raise AuditError("walk not begun", reason="bad_query")
        asked = self.count()
        for raw in page:
            sid, fields = entry_fields(raw)
            if not verifier.feed(sid, fields):
                return False
            self.lower, self.last_id, self.read = f"({sid}", sid, self.read + 1
        return len(page) == asked and not self.at_limit()

    def at_limit(self) -> bool:
        return self.limit is not None and self.read >= self.limit

    def finish(self, late: str | None, more: bool) -> WalkReport:
        first = self.start.seq + 1
        if self.failed is not None or self.verifier is None:
            bad = self.failed or BadRecord(0, None, "unavailable")
            report = VerifyReport(False, self.stream, 0, self.start.seq, self.start.mac, bad)
            return WalkReport(report, first, self.last_id, True)
        complete = not more
        report = self.verifier.finish(late, complete=complete)
        return WalkReport(report, first, self.last_id, complete or not report.ok)


def verify_walk(
    client: redis.Redis,
    keys: AuditKeys,
    *,
    stream: str = DEFAULT_STREAM,
    start: Head = EMPTY_HEAD,
    pinned: Head | None = None,
    resume: tuple[str, Head | None] | None = None,
    limit: int | None = None,
) -> WalkReport:
    """Verify from ``start`` (or from ``resume``: a stream id and the ``(seq, mac)`` the
    entry there must have, None for a cursor that must verify itself), at most ``limit``
    entries. Raises :class:`AuditError` (``unavailable``) if Redis cannot be read."""
    walk = _Walk(keys, stream, start=start, pinned=pinned, limit=limit)
    try:
        walk.begin(read_head(client, stream))
        if resume is not None:
            walk.resume_at(
                resume[0], client.xrange(stream, resume[0], resume[0], count=1), resume[1]
            )
            walk.begin(walk.early)  # start moved: a fresh verifier linking to it
            if walk.failed is not None:
                return walk.finish(None, False)
        more = True
        while more:
            page = client.xrange(stream, min=walk.lower, count=walk.count()) or []
            more = walk.feed(page)
        more = walk.at_limit() and bool(client.xrange(stream, min=walk.lower, count=1))
        return walk.finish(read_head(client, stream), more)
    except redis.RedisError as exc:
        raise unavailable(exc) from exc


async def averify_walk(
    client: redis.asyncio.Redis,
    keys: AuditKeys,
    *,
    stream: str = DEFAULT_STREAM,
    start: Head = EMPTY_HEAD,
    pinned: Head | None = None,
    resume: tuple[str, Head | None] | None = None,
    limit: int | None = None,
) -> WalkReport:
    """Asyncio twin of :func:`verify_walk`."""
    walk = _Walk(keys, stream, start=start, pinned=pinned, limit=limit)
    try:
        raw = await client.get(f"{stream}:head")
        walk.begin(None if raw is None else text(raw))
        if resume is not None:
            found = await client.xrange(stream, resume[0], resume[0], count=1)
            walk.resume_at(resume[0], found, resume[1])
            walk.begin(walk.early)
            if walk.failed is not None:
                return walk.finish(None, False)
        more = True
        while more:
            page = await client.xrange(stream, min=walk.lower, count=walk.count()) or []
            more = walk.feed(page)
        more = walk.at_limit() and bool(await client.xrange(stream, min=walk.lower, count=1))
        late = await client.get(f"{stream}:head")
        return walk.finish(None if late is None else text(late), more)
    except redis.RedisError as exc:
        raise unavailable(exc) from exc
