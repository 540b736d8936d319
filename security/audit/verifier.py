"""Walk an audit chain entry by entry and name the first entry that breaks it.

Pure: :class:`ChainVerifier` is fed ``(stream_id, fields)`` in stream order by whatever
reads the stream (sync or asyncio Redis, a JSON-lines export) and never raises for a
broken chain; :meth:`ChainVerifier.finish` returns a :class:`VerifyReport`.

What it catches, and the ``reason`` it reports:

* ``malformed``: a missing, extra or ill-shaped field (a payload-ish field added by hand);
* ``unknown_kid`` / ``bad_mac``: an edited field, or a forged or inserted entry;
* ``legacy_format``: an entry written before per-role audit keys (no ``writer``); such a
  log is exported and archived (``taskgate audit export``), then a new stream started;
* ``writer_mismatch``: an entry whose ``writer`` is not the role of the audit key that
  MACed it (a worker's key posing as the gateway or an operator);
* ``seq_gap``: a deleted entry (or a reorder that moved a later one up);
* ``seq_reorder``: an entry whose seq was already passed (a replayed or moved entry);
* ``prev_mismatch``: an entry from another chain (right seq, wrong predecessor);
* ``checkpoint_mismatch`` / ``truncated``: the entry at a checkpoint's seq differs, or
  the stream ends before it (``detail`` names the missing range of seqs);
* ``start_mismatch``: the first entry does not link to the anchor the walk started from
  (the signed checkpoint that closed the archive, or a verified entry to resume after);
* ``head_mismatch`` / ``head_missing`` / ``bad_head``: the head key disagrees with the
  entries.

Limit: without a checkpoint, deleting the last entries *and* rewinding the head key
(whose value is public) leaves a shorter chain that verifies. Keep signed checkpoints
(:mod:`security.audit.checkpoint`) outside Redis to catch that.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from security.audit.chain import (
    EMPTY_HEAD,
    AuditEntry,
    AuditKeys,
    Head,
    audit_key_sets,
    compute_mac,
    find_key,
    parse_entry,
    parse_head,
)
from security.errors import AuditChainBrokenError, AuditError
from security.keys import audit_writer

__all__ = ["BadRecord", "ChainVerifier", "VerifyReport"]


@dataclass(frozen=True, slots=True)
class BadRecord:
    """The first thing wrong: its 0-based position, its stream id (None when missing), why,
    and for a cut log the range of seqs that is gone (``detail``, not compared)."""

    index: int
    stream_id: str | None
    reason: str
    detail: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of a verification.

    ``count`` is how many entries verified before the first bad one (all of them when
    ``ok``); ``head_seq``/``head_mac`` are those of the last good entry, the values a
    new checkpoint would pin.
    """

    ok: bool
    stream: str
    count: int
    head_seq: int
    head_mac: str
    first_bad: BadRecord | None

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict for the CLI and the admin API."""
        return asdict(self)

    def raise_if_broken(self) -> VerifyReport:
        """Return ``self`` if ok, else raise :class:`AuditChainBrokenError` naming the entry."""
        bad = self.first_bad
        if bad is None:
            return self
        raise AuditChainBrokenError(
            f"audit chain {self.stream} broken at index {bad.index}: {bad.reason}",
            index=bad.index,
            record_id=bad.stream_id or "",
            reason=bad.reason,
        )


class ChainVerifier:
    """Verify entries fed in stream order against ``keys`` (retired keys included).

    ``keys`` is one role's audit key set or several (one per role, as a ring's
    ``audit_keys()``); an entry verifies only under a key of the role it names as ``writer``.

    A retired audit key still verifies the entries it MACed: retiring stops new MACs,
    it must not make history unverifiable. Remove a key from the set only if it leaked.

    The head key is read twice: ``head`` *before* the first entry is read (every entry
    it names must then be in the stream: else the tail was cut) and ``late_head``, passed
    to :meth:`finish`, *after* the last (it may be ahead of the walk because writers kept
    appending, never behind it). ``pinned`` is a checkpoint's ``(seq, mac)``.

    ``start`` is what the first fed entry must link to: :data:`EMPTY_HEAD` for a whole
    log, the head of the signed checkpoint that closed the archive for a trimmed one, or
    an authenticated entry to resume after (incremental verification).
    """

    def __init__(
        self,
        keys: AuditKeys,
        *,
        stream: str,
        head: str | None,
        pinned: Head | None = None,
        start: Head = EMPTY_HEAD,
    ) -> None:
        self._keys = audit_key_sets(keys)
        self._stream = stream
        self._pinned = pinned
        self._head = _parse_stored_head(head)
        self._start = start
        self._last = start
        self._count = 0
        self._bad: BadRecord | None = None

    @property
    def broken(self) -> bool:
        """True once a bad entry was seen (further entries are ignored)."""
        return self._bad is not None

    @property
    def last(self) -> Head:
        """The last entry that verified (``start`` before any)."""
        return self._last

    def _fail(
        self, stream_id: str | None, reason: str, index: int | None = None, detail: str = ""
    ) -> bool:
        where = self._count if index is None else index
        self._bad = BadRecord(where, stream_id, reason, detail)
        return False

    def _missing(self, upto: int, what: str) -> bool:
        first = self._last.seq + 1
        detail = (
            f"records {first}-{upto} are missing ({what} seq {upto}, log ends at seq {first - 1})"
        )
        return self._fail(None, "truncated", detail=detail)

    def feed(self, stream_id: str, fields: Mapping[str, str]) -> bool:
        """Check the next entry; False once the chain is broken."""
        if self._bad is not None:
            return False
        checked = self._check(stream_id, fields)
        if isinstance(checked, str):
            return self._fail(stream_id, checked, detail=self._gap(checked, fields))
        self._last = Head(checked.seq, checked.mac)
        self._count += 1
        return True

    def _gap(self, reason: str, fields: Mapping[str, str]) -> str:
        if reason not in {"seq_gap", "start_mismatch"} or not fields.get("seq", "").isdigit():
            return ""
        first, seq = self._last.seq + 1, int(fields["seq"])
        return f"records {first}-{seq - 1} are missing" if seq > first else ""

    def _check(self, stream_id: str, fields: Mapping[str, str]) -> AuditEntry | str:
        """The parsed entry if it is authentic and links on, else why not."""
        try:
            entry = parse_entry(stream_id, fields)
        except AuditError:
            return "malformed"
        if not entry.writer:
            return "legacy_format"
        key = find_key(self._keys, entry.kid)
        if key is None:
            return "unknown_kid"
        if not hmac.compare_digest(compute_mac(key, fields), entry.mac):
            return "bad_mac"
        if audit_writer(key.purpose) != entry.writer:
            return "writer_mismatch"
        return self._link_problem(entry) or entry

    def _link_problem(self, entry: AuditEntry) -> str | None:
        expected = self._last.seq + 1
        if (
            self._count == 0
            and self._start.seq
            and (entry.seq != expected or not hmac.compare_digest(entry.prev, self._start.mac))
        ):
            return "start_mismatch"
        if entry.seq != expected:
            return "seq_gap" if entry.seq > expected else "seq_reorder"
        if not hmac.compare_digest(entry.prev, self._last.mac):
            return "prev_mismatch"
        pinned, head = self._pinned, self._head
        if pinned is not None and entry.seq == pinned.seq and entry.mac != pinned.mac:
            return "checkpoint_mismatch"
        if isinstance(head, Head) and entry.seq == head.seq and entry.mac != head.mac:
            return "head_mismatch"
        return None

    def finish(self, late_head: str | None, *, complete: bool = True) -> VerifyReport:
        """The report, once every entry was fed; ``late_head`` is the head key read now.

        ``complete=False``: the walk stopped at a limit before the end of the stream, so
        only the entries fed are judged (the end is for a later call to check).
        """
        if self._bad is None and complete:
            self._check_end(_parse_stored_head(late_head))
        return VerifyReport(
            ok=self._bad is None,
            stream=self._stream,
            count=self._count,
            head_seq=self._last.seq,
            head_mac=self._last.mac,
            first_bad=self._bad,
        )

    def _check_end(self, late: Head | str | None) -> None:
        last, pinned, early = self._last.seq, self._pinned, self._head
        if pinned is not None and pinned.seq > last:
            self._missing(pinned.seq, "the checkpoint pins")
        elif pinned is not None and pinned.seq == self._start.seq and pinned.mac != self._start.mac:
            self._fail(None, "checkpoint_mismatch", index=0)  # entries after it are checked in feed
        elif _BAD in (early, late):
            self._fail(None, "bad_head")
        elif isinstance(early, Head) and early.seq > last:
            self._missing(early.seq, "the head key names")  # the tail was cut
        elif late is None:
            if last:
                self._fail(None, "head_missing")
        elif isinstance(late, Head) and (
            late.seq < last or (late.seq == last and late.mac != self._last.mac)
        ):
            self._fail(None, "head_mismatch")  # behind the entries: rewound by hand


_BAD = "bad"  # marks a head value that does not parse


def _parse_stored_head(raw: str | None) -> Head | str | None:
    if raw is None:
        return None
    try:
        head = parse_head(raw)
    except AuditError:
        return _BAD
    # The script never stores seq 0: such a head was written by hand.
    return _BAD if head.seq == 0 else head
