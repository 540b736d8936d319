"""Anchors: signed checkpoints of the audit chain, kept outside Redis, newest last.

An anchor file is JSON Lines, one anchor a line, only ever appended to::

    {"checkpoint": {...signed checkpoint...}, "stream_id": "1765117126123-0"}

``stream_id`` is the stream id of the checkpointed entry: an unsigned hint that lets a
verifier resume there (incremental verification); a wrong hint fails verification, it
cannot make a bad log pass. Appends take an exclusive ``flock`` (several gateway
processes on one host share the file) and are fsynced before the call returns. Point
``TASKGATE_AUDIT_ANCHOR_FILE`` at storage an attacker holding Redis, or even the gateway
host, cannot rewrite (an append-only mount, a file shipped off the host): a checkpoint is
only as trustworthy as the place it is kept.

An archive segment (:mod:`security.audit.archive`) ends with an anchor line too: the
checkpoint that closed it.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from security.audit.checkpoint import Checkpoint, verify_checkpoint
from security.errors import AuditError
from security.keys import KeySet, SigningKey

__all__ = ["Anchor", "append_anchor", "newest", "parse_anchor", "read_anchors"]

_TAIL_BYTES: Final = 64 * 1024  # the newest anchors are at the end: read no more than this
_STREAM_ID_CHARS: Final = 41


@dataclass(frozen=True, slots=True)
class Anchor:
    """A verified checkpoint and the stream id of the entry it pins (None if unknown)."""

    checkpoint: Checkpoint
    stream_id: str | None

    def to_line(self) -> str:
        """The JSON line :func:`parse_anchor` reads back."""
        doc = {"checkpoint": self.checkpoint.to_dict(), "stream_id": self.stream_id}
        return json.dumps(doc, separators=(",", ":"))


def _bad(where: str) -> AuditError:
    return AuditError(f"audit anchor {where} is malformed", reason="bad_checkpoint")


def parse_anchor(line: str, verifiers: KeySet[SigningKey], *, where: str = "line") -> Anchor:
    """One anchor line, its signature checked; :class:`AuditError` if it does not hold."""
    try:
        doc = json.loads(line)
    except ValueError:
        raise _bad(where) from None
    if not isinstance(doc, dict) or set(doc) != {"checkpoint", "stream_id"}:
        raise _bad(where)
    sid = doc["stream_id"]
    if sid is not None and not (isinstance(sid, str) and 0 < len(sid) <= _STREAM_ID_CHARS):
        raise _bad(where)
    if sid is not None and not all(part.isdigit() for part in sid.split("-", 1)):
        raise _bad(where)
    checkpoint = doc["checkpoint"]
    if not isinstance(checkpoint, dict):
        raise _bad(where)
    return Anchor(verify_checkpoint(checkpoint, verifiers), sid)


def append_anchor(path: Path, anchor: Anchor) -> None:
    """Append ``anchor`` to ``path`` (created ``0600``, parent ``0700``), fsynced."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, (anchor.to_line() + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)  # closing releases the lock


def read_anchors(path: Path, verifiers: KeySet[SigningKey], *, tail: bool = True) -> list[Anchor]:
    """The anchors in ``path`` (the last 64 KiB of it with ``tail``), oldest first.

    Every complete line must verify: a line that does not is tampering with the anchors
    and raises :class:`AuditError` rather than being skipped. A missing file is no anchors.
    """
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            start = max(0, size - _TAIL_BYTES) if tail else 0
            fh.seek(start)
            data = fh.read()
    except FileNotFoundError:
        return []
    lines = data.decode("ascii", "replace").split("\n")
    if start > 0:
        lines = lines[1:]  # the first is probably cut mid-line
    return [
        parse_anchor(line, verifiers, where=f"in {path.name}") for line in lines if line.strip()
    ]


def newest(anchors: Iterable[Anchor], stream: str) -> Anchor | None:
    """The anchor of ``stream`` with the highest seq (the latest one among equals)."""
    best: Anchor | None = None
    for anchor in anchors:
        if anchor.checkpoint.stream != stream:
            continue
        if best is None or anchor.checkpoint.seq >= best.checkpoint.seq:
            best = anchor
    return best
