"""Retention: move the oldest segment of the audit stream to an archive file, then trim.

A segment file ``audit-<first seq>-<last seq>.jsonl`` holds one entry a line, with its
stream id and its exact stream fields (the strings the MAC covers)::

    {"id": "1765117126123-0", "seq": "1", "prev": "000…", "kid": "…", "writer": "gateway",
     "time": "1765117126.12", "request_id": "…", "actor": "…", "action": "…",
     "target": "…", "outcome": "…", "reason": "…", "mac": "…"}

and ends with an anchor line (:mod:`security.audit.anchor`): the signed checkpoint of its
last entry, which *closes* it. The file is written beside, fsynced and renamed into place
before anything is trimmed; the trim script then removes exactly the archived entries (if
the last one is still the one archived) and stores the closing anchor as the stream's
*base* (``<stream>:base``), so that the live log verifies from its first entry on. Only
the operator role trims (``XTRIM``, ``SET <stream>:base``); gateway and workers append.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import redis

from security.audit.anchor import Anchor, parse_anchor
from security.audit.chain import ENTRY_FIELDS
from security.audit.store import text
from security.errors import AuditError, ConfigError
from security.keys import KeySet, SigningKey
from security.lua import lua_script

__all__ = [
    "Retention",
    "Segment",
    "base_key",
    "list_segments",
    "parse_retention",
    "read_base",
    "read_segment",
    "trim",
    "write_segment",
]

_AGE_RE: Final = re.compile(r"([1-9][0-9]{0,6})([smhd])")
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
_NAME_RE: Final = re.compile(r"audit-([0-9]{12})-([0-9]{12})\.jsonl")

# What it does, its KEYS and ARGV: the comment at the top of audit_trim.lua.
_TRIM_LUA: Final = lua_script("security.audit", "audit_trim.lua")


@dataclass(frozen=True, slots=True)
class Retention:
    """Keep the newest ``records`` entries, or entries younger than ``age`` seconds."""

    records: int | None = None
    age: int | None = None


def parse_retention(value: str) -> Retention:
    """``"1000000"`` (records) or ``"30d"``/``"12h"``/``"90m"``/``"3600s"`` (age)."""
    raw = value.strip()
    if raw.isdigit() and 0 < int(raw) <= 10**12:
        return Retention(records=int(raw))
    if m := _AGE_RE.fullmatch(raw):
        return Retention(age=int(m.group(1)) * _UNITS[m.group(2)])
    raise ConfigError(
        "TASKGATE_AUDIT_RETENTION",
        "must be a record count or an age",
        "use e.g. 1000000 (records) or 30d, 12h, 90m, 3600s",
    )


def base_key(stream: str) -> str:
    """The key holding the anchor that closed the newest archive (the live log's start)."""
    return f"{stream}:base"


def read_base(client: redis.Redis, stream: str, verifiers: KeySet[SigningKey]) -> Anchor | None:
    """The stream's base anchor, signature checked (None: never trimmed)."""
    raw = client.get(base_key(stream))
    return None if raw is None else parse_anchor(text(raw), verifiers, where=base_key(stream))


@dataclass(frozen=True, slots=True)
class Segment:
    """An archived segment: its entries (stream id, exact fields) and its closing anchor."""

    path: Path
    entries: list[tuple[str, dict[str, str]]]
    closing: Anchor


def _segment_name(first: int, last: int) -> str:
    return f"audit-{first:012d}-{last:012d}.jsonl"


def write_segment(
    folder: Path, entries: Sequence[tuple[str, Mapping[str, str]]], closing: Anchor
) -> Path:
    """Write a segment file atomically (temp file, fsync, rename, fsync the folder)."""
    if not entries:
        raise AuditError("an archive segment needs entries", reason="bad_query")
    first, last = int(entries[0][1]["seq"]), int(entries[-1][1]["seq"])
    if closing.checkpoint.seq != last:
        raise AuditError("the closing checkpoint is not the segment's last", reason="bad_query")
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / _segment_name(first, last)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        for sid, fields in entries:
            doc = {"id": sid} | {name: fields[name] for name in ENTRY_FIELDS if name in fields}
            fh.write(json.dumps(doc, separators=(",", ":")) + "\n")
        fh.write(closing.to_line() + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def read_segment(path: Path, verifiers: KeySet[SigningKey]) -> Segment:
    """Parse a segment file; :class:`AuditError` (``bad_archive``) if it is not one."""
    lines = [
        line for line in path.read_text(encoding="ascii", errors="replace").split("\n") if line
    ]
    if len(lines) < 2:
        raise AuditError(f"archive {path.name} is incomplete", reason="bad_archive")
    entries: list[tuple[str, dict[str, str]]] = []
    for number, line in enumerate(lines[:-1], start=1):
        try:
            doc = json.loads(line)
        except ValueError:
            raise AuditError(
                f"archive {path.name} line {number} is malformed", reason="bad_archive"
            ) from None
        if not isinstance(doc, dict) or not all(isinstance(v, str) for v in doc.values()):
            raise AuditError(
                f"archive {path.name} line {number} is malformed", reason="bad_archive"
            )
        sid = doc.pop("id", "")
        entries.append((sid, doc))
    closing = parse_anchor(lines[-1], verifiers, where=f"closing {path.name}")
    return Segment(path, entries, closing)


def list_segments(folder: Path) -> list[Path]:
    """The segment files in ``folder``, oldest first (by first seq)."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME_RE.fullmatch(p.name))]
    return [p for _, p in sorted(found)]


def trim(client: redis.Redis, stream: str, closing: Anchor) -> int:
    """Remove every entry up to the closing anchor's and make it the stream's base.

    Raises :class:`AuditError` (``trim_refused``) if the last archived entry is gone or
    changed since it was archived: nothing is trimmed then.
    """
    sid = closing.stream_id
    if sid is None:
        raise AuditError("a closing anchor needs its stream id", reason="trim_refused")
    ms, _, part = sid.partition("-")
    next_id = f"{ms}-{int(part) + 1}"
    cp = closing.checkpoint
    reply = client.register_script(_TRIM_LUA)(
        keys=[stream, base_key(stream)], args=[sid, str(cp.seq), cp.mac, next_id, closing.to_line()]
    )
    trimmed = int(reply)
    if trimmed < 0:
        raise AuditError(
            "the last archived entry changed before the trim; nothing trimmed",
            reason="trim_refused",
        )
    return trimmed
