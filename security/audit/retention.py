"""``taskgate audit archive``: archive the segment past retention, then trim it (operator).

One run: verify the live log (a tampered log is never archived nor trimmed), pick the
oldest entries past :class:`~security.audit.archive.Retention`, write them as segment
files of at most ``max_segment`` entries each closed by a signed checkpoint, trim them
from the stream, and append one ``audit.archive`` record per segment (written with the
operator's own audit key).
"""

from __future__ import annotations

import time as _time
from dataclasses import dataclass
from pathlib import Path

import redis

from security.audit.actions import AuditAction
from security.audit.anchor import Anchor
from security.audit.archive import Retention, list_segments, read_base, trim, write_segment
from security.audit.chain import AuditRecord, Head
from security.audit.checkpoint import sign_checkpoint
from security.audit.read import entry_fields
from security.audit.span import verify_span
from security.audit.store import DEFAULT_STREAM, AuditWriter
from security.errors import AuditChainBrokenError
from security.keystore import KeyRing

__all__ = ["Archived", "archive_oldest"]

MAX_SEGMENT = 100_000


@dataclass(frozen=True, slots=True)
class Archived:
    """One segment written and trimmed."""

    path: Path
    first_seq: int
    last_seq: int
    trimmed: int


def _due(client: redis.Redis, stream: str, retention: Retention, now: float) -> int:
    """How many of the oldest live entries are past retention."""
    total = int(client.xlen(stream))
    if retention.records is not None:
        return max(0, total - retention.records)
    cutoff = now - (retention.age or 0)
    due, lower = 0, "-"
    while page := client.xrange(stream, min=lower, count=1000):
        for raw in page:
            sid, fields = entry_fields(raw)
            try:
                when = float(fields.get("time", "inf"))
            except ValueError:
                when = float("inf")
            if when >= cutoff:
                return due
            due, lower = due + 1, f"({sid}"
    return due


def _oldest(client: redis.Redis, stream: str, n: int) -> list[tuple[str, dict[str, str]]]:
    """The ``n`` oldest entries, read a page at a time (no long XRANGE blocks Redis)."""
    out: list[tuple[str, dict[str, str]]] = []
    lower = "-"
    while len(out) < n and (
        page := client.xrange(stream, min=lower, count=min(1000, n - len(out)))
    ):
        out += [entry_fields(raw) for raw in page]
        lower = f"({out[-1][0]}"
    return out


def _drop_superseded(folder: Path, path: Path, first: int) -> None:
    """Remove a segment from an earlier run that wrote but never trimmed (same first seq):
    the new segment holds all of it and more."""
    for other in list_segments(folder):
        if other != path and other.name.startswith(f"audit-{first:012d}-"):
            other.unlink()


def archive_oldest(
    client: redis.Redis,
    ring: KeyRing,
    folder: Path,
    retention: Retention,
    *,
    stream: str = DEFAULT_STREAM,
    anchors: list[Anchor] | None = None,
    now: float | None = None,
    max_segment: int = MAX_SEGMENT,
) -> list[Archived]:
    """Archive and trim what retention no longer keeps; the segments written.

    Raises :class:`AuditChainBrokenError` if the live log does not verify first, and
    :class:`~security.errors.AuditError` (``trim_refused``) if it changed mid-way.
    """
    when = _time.time() if now is None else now
    span = verify_span(
        client, ring.audit_keys(), ring.signing, stream=stream, anchors=anchors or []
    )
    if not span.ok:
        bad = span.bad
        raise AuditChainBrokenError(
            f"audit log does not verify ({span.describe()}); nothing archived",
            index=0 if bad is None else bad.index,
            record_id="" if bad is None or bad.stream_id is None else bad.stream_id,
            reason="chain_broken" if bad is None else bad.reason,
        )
    signer = ring.signing.current()
    writer = AuditWriter(client, ring.audit, stream=stream)
    done: list[Archived] = []
    due = _due(client, stream, retention, when)
    while due > 0:
        entries = _oldest(client, stream, min(due, max_segment))
        if not entries:
            break
        last_sid, last = entries[-1]
        head = Head(int(last["seq"]), last["mac"])
        closing = Anchor(sign_checkpoint(head, signer, stream=stream, now=when), last_sid)
        path = write_segment(folder, entries, closing)
        _drop_superseded(folder, path, int(entries[0][1]["seq"]))
        trimmed = trim(client, stream, closing)
        first_seq = int(entries[0][1]["seq"])
        done.append(Archived(path, first_seq, head.seq, trimmed))
        writer.append(
            AuditRecord.make(
                actor="operator",
                action=AuditAction.AUDIT_ARCHIVE,
                outcome="ok",
                target=path.name,
                reason=f"seq {first_seq}-{head.seq} archived, {trimmed} trimmed",
            )
        )
        due -= len(entries)
    base = read_base(client, stream, ring.signing)
    if base is not None and done and base.checkpoint.seq != done[-1].last_seq:
        raise AuditChainBrokenError(
            "the stream's base moved during the archive",
            index=0,
            record_id="",
            reason="trim_refused",
        )
    return done
