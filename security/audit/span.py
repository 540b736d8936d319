"""Verify the whole history: archived segments, then the live stream, against the anchors.

The span is walked oldest first. Each archive segment must link to the one before and
end exactly at its closing checkpoint; the live stream must link to the last closing
checkpoint (or, without the archive at hand, to the signed base the trim left in Redis);
and the newest anchor - the archive's closing ones, the base and those from the anchor
file - must still be reached: a wiped log (``FLUSHALL``), a cut tail or a rewound head
fails with ``truncated`` and the range of seqs that is missing.

``incremental=True`` resumes the live walk at the newest anchor that is still live (it
was verified when it was taken), so a check costs the entries since then, not the log.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import redis

from security.audit.anchor import Anchor, newest
from security.audit.archive import list_segments, read_base, read_segment
from security.audit.chain import EMPTY_HEAD, AuditKeys, Head
from security.audit.store import DEFAULT_STREAM
from security.audit.verifier import BadRecord, ChainVerifier
from security.audit.walk import WalkReport, verify_walk
from security.errors import AuditError
from security.keys import KeySet, SigningKey

__all__ = ["SpanReport", "verify_archives", "verify_span"]


@dataclass(frozen=True, slots=True)
class SpanReport:
    """The verdict over archive + live: ``where`` the first problem is (``archive <file>``
    or ``live``), how many entries verified in each, and the range covered (from the
    resumed anchor's next seq, for an incremental check)."""

    ok: bool
    first_seq: int
    last_seq: int
    archived: int
    live: int
    where: str = ""
    bad: BadRecord | None = None
    newest_anchor: int | None = None

    def describe(self) -> str:
        """One line for the CLI."""
        if self.ok:
            text = f"ok: {self.archived + self.live} records"
            if self.first_seq <= self.last_seq:
                text += f" (seq {self.first_seq}-{self.last_seq}:"
                text += f" {self.archived} archived, {self.live} live)"
            text += f", head seq {self.last_seq}"
            if self.newest_anchor is not None:
                text += f", newest checkpoint seq {self.newest_anchor} reached"
            return text
        bad = self.bad or BadRecord(0, None, "unknown")
        at = f" (stream id {bad.stream_id})" if bad.stream_id else ""
        detail = f": {bad.detail}" if bad.detail else ""
        return f"BROKEN in {self.where} at record #{bad.index}{at}: {bad.reason}{detail}"


@dataclass(frozen=True, slots=True)
class _Archives:
    first_seq: int
    count: int
    closed: Anchor | None
    bad: BadRecord | None = None
    where: str = ""


def verify_archives(folder: Path, keys: AuditKeys, verifiers: KeySet[SigningKey]) -> _Archives:
    """Walk every segment in ``folder`` in order; the first problem, or where they end."""
    start, first_seq, count, closed = EMPTY_HEAD, 1, 0, None
    for number, path in enumerate(list_segments(folder)):
        try:
            segment = read_segment(path, verifiers)
        except AuditError as exc:
            return _Archives(first_seq, count, closed, BadRecord(0, None, exc.reason), path.name)
        entries = segment.entries
        if number == 0 and entries and entries[0][1].get("seq", "") != "1":
            # Older segments were deleted: start at this one's first entry, said out loud.
            raw = entries[0][1].get("seq", "")
            seq = int(raw) if raw.isdigit() else 1  # not a number: the walk says malformed
            start, first_seq = Head(seq - 1, entries[0][1].get("prev", "")), seq
        verifier = ChainVerifier(
            keys, stream=segment.closing.checkpoint.stream, head=None, start=start
        )
        for sid, fields in entries:
            if not verifier.feed(sid, fields):
                break
        report = verifier.finish(None, complete=False)
        cp = segment.closing.checkpoint
        if report.first_bad is not None:
            return _Archives(first_seq, count, closed, report.first_bad, path.name)
        if (report.head_seq, report.head_mac) != (cp.seq, cp.mac):
            bad = BadRecord(report.count, None, "checkpoint_mismatch", "closing checkpoint")
            return _Archives(first_seq, count, closed, bad, path.name)
        start, count, closed = cp.head, count + report.count, segment.closing
    return _Archives(first_seq, count, closed)


def _still_live(client: redis.Redis, stream: str, anchor: Anchor | None) -> bool:
    sid = None if anchor is None else anchor.stream_id
    return sid is not None and bool(client.xrange(stream, sid, sid, count=1))


def verify_span(
    client: redis.Redis,
    keys: AuditKeys,
    verifiers: KeySet[SigningKey],
    *,
    stream: str = DEFAULT_STREAM,
    archive_dir: Path | None = None,
    anchors: Iterable[Anchor] = (),
    incremental: bool = False,
) -> SpanReport:
    """Verify archive (if ``archive_dir``) + live against the newest of ``anchors``."""
    archived = _Archives(1, 0, None)
    if archive_dir is not None:
        archived = verify_archives(archive_dir, keys, verifiers)
        if archived.bad is not None:
            last = archived.first_seq + archived.count - 1
            return SpanReport(
                False,
                archived.first_seq,
                last,
                archived.count,
                0,
                f"archive {archived.where}",
                archived.bad,
            )
    try:
        base = read_base(client, stream, verifiers)
    except AuditError as exc:
        return SpanReport(False, 1, 0, archived.count, 0, "live", BadRecord(0, None, exc.reason))
    closed = archived.closed
    pool = [a for a in (*anchors, closed, base) if a is not None]
    pinned = newest(pool, stream)
    start = closed if closed is not None else base
    first_seq = (
        archived.first_seq if closed is not None else (base.checkpoint.seq + 1 if base else 1)
    )
    if closed is not None and base is not None and base.checkpoint.seq > closed.checkpoint.seq:
        detail = f"records {closed.checkpoint.seq + 1}-{base.checkpoint.seq} are not in the archive"
        bad = BadRecord(0, None, "truncated", detail)
        return SpanReport(
            False, first_seq, closed.checkpoint.seq, archived.count, 0, "archive", bad
        )
    if closed is not None and base is None and not _still_live(client, stream, closed):
        detail = f"the live log's base (seq {closed.checkpoint.seq}) is gone: wiped or rewritten"
        bad = BadRecord(0, None, "base_missing", detail)
        return SpanReport(False, first_seq, closed.checkpoint.seq, archived.count, 0, "live", bad)
    resume_from = start
    if incremental and pinned is not None and _still_live(client, stream, pinned):
        resume_from = pinned  # verified when it was taken: only what came after is new
        first_seq = pinned.checkpoint.seq + 1
    walk: WalkReport
    if resume_from is not None and _still_live(client, stream, resume_from):
        sid = resume_from.stream_id or "-"
        walk = verify_walk(
            client,
            keys,
            stream=stream,
            pinned=None if pinned is None else pinned.checkpoint.head,
            resume=(sid, resume_from.checkpoint.head),
        )
    else:
        walk = verify_walk(
            client,
            keys,
            stream=stream,
            start=EMPTY_HEAD if start is None else start.checkpoint.head,
            pinned=None if pinned is None else pinned.checkpoint.head,
        )
    report = walk.report
    return SpanReport(
        report.ok,
        first_seq,
        report.head_seq,
        archived.count,
        report.count,
        "" if report.ok else "live",
        report.first_bad,
        None if pinned is None else pinned.checkpoint.seq,
    )
