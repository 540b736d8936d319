"""The pure logic of the audit chain: the record, its canonical bytes, its MAC, its links.

Nothing here talks to Redis. A record is seven fixed fields (no room for a payload
value or a secret); each stored entry adds ``seq``, ``prev`` (the previous entry's
``mac``, :data:`GENESIS` for the first), ``kid``, ``writer`` (the role that appended it:
``gateway``, ``worker`` or ``operator``) and
``mac = HMAC-SHA256(audit key, canonical bytes of every other field)``.

Each role MACs with its own audit key (purpose ``audit-<role>``), and ``writer`` is the
role of that key's purpose: a verifier holding every role's key refuses an entry whose
``writer`` is not the role of the key that MACed it, so a worker's key cannot make an
entry that verifies as the gateway's or an operator's.

The MAC covers the exact strings written to the stream (``seq`` in decimal, ``time`` as
``repr(float)``), so any byte changed in Redis shows, and a verifier in another language
only needs JSON and HMAC to recompute it.
"""

from __future__ import annotations

import hmac
import json
import math
import re
import time as _time
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal, cast, get_args

from security.errors import AuditError, KeyRingError
from security.keys import ROLES, KeySet, SymmetricKey, audit_writer, valid_kid

__all__ = [
    "EMPTY_HEAD",
    "ENTRY_FIELDS",
    "GENESIS",
    "MAX_FIELD_CHARS",
    "MAX_REASON_CHARS",
    "RECORD_FIELDS",
    "AuditEntry",
    "AuditKeys",
    "AuditRecord",
    "Head",
    "Outcome",
    "audit_key_sets",
    "chain_records",
    "compute_mac",
    "find_key",
    "neutralise",
    "parse_entry",
    "parse_head",
    "require_audit_keys",
]

Outcome = Literal["allowed", "denied", "ok", "error"]
_OUTCOMES: Final = frozenset(get_args(Outcome))

GENESIS: Final = "0" * 64  # ``prev`` of record 1: no previous MAC exists
MAX_REASON_CHARS: Final = 200
MAX_FIELD_CHARS: Final = 128
_DOMAIN: Final = "taskgate.audit.v2"  # domain separation: these bytes are never a token or envelope
_STR_FIELDS: Final = ("request_id", "actor", "action", "target", "outcome", "reason")
RECORD_FIELDS: Final = ("time", *_STR_FIELDS)
_LINK_FIELDS: Final = ("seq", "prev", "kid", "writer")
ENTRY_FIELDS: Final = (*_LINK_FIELDS, *RECORD_FIELDS, "mac")  # every field of a stream entry
# Entries written before per-role audit keys: no writer, MACed with the one shared key.
# They parse (writer "") so a log can still be read and exported; they never verify.
_V1_FIELDS: Final = frozenset(ENTRY_FIELDS) - {"writer"}
_MAC_RE: Final = re.compile(r"[0-9a-f]{64}")
_SEQ_RE: Final = re.compile(r"[1-9][0-9]{0,17}")
# Categories that can forge a line, hide text or reorder it on a terminal: controls (Cc,
# CR and LF among them), format characters (Cf: bidi overrides, zero-width), lone
# surrogates (Cs: not even encodable) and the Unicode line/paragraph separators.
_UNSAFE_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_REPLACEMENT: Final = "\ufffd"


def neutralise(value: str, cap: int) -> str:
    """``value`` with every control/format/separator character replaced by U+FFFD, capped.

    A value longer than ``cap`` is cut to ``cap`` characters, the last being ``…`` so a
    reader can tell it was cut. Applying it twice changes nothing.
    """
    if not value.isprintable():  # fast path: most values are plain printable text
        value = "".join(
            _REPLACEMENT if unicodedata.category(ch) in _UNSAFE_CATEGORIES else ch for ch in value
        )
    if len(value) > cap:
        value = value[: cap - 1] + "\u2026"
    return value


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audited event. Fixed fields only: there is nowhere to put a payload or a secret.

    Strings are neutralised (control characters -> U+FFFD) and capped (``reason`` at
    200 characters, the others at 128) on construction; ``outcome`` is one of
    ``allowed``, ``denied``, ``ok``, ``error``. Invalid input raises :class:`AuditError`
    (``reason="bad_record"``) whose message names the field, never the value.
    """

    time: float
    actor: str
    action: str
    outcome: Outcome
    target: str = ""
    request_id: str = ""
    reason: str = ""

    def __post_init__(self) -> None:
        t = self.time
        if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or t < 0:
            raise AuditError("audit field time must be a finite epoch", reason="bad_record")
        object.__setattr__(self, "time", float(t))
        for name in _STR_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, str):
                raise AuditError(f"audit field {name} must be a string", reason="bad_record")
            cap = MAX_REASON_CHARS if name == "reason" else MAX_FIELD_CHARS
            object.__setattr__(self, name, neutralise(value, cap))
        if self.outcome not in _OUTCOMES:
            raise AuditError("audit field outcome is not a known outcome", reason="bad_record")
        if not self.actor or not self.action:
            raise AuditError("audit fields actor and action are required", reason="bad_record")

    @classmethod
    def make(
        cls,
        *,
        actor: str,
        action: str,
        outcome: Outcome,
        target: str = "",
        request_id: str = "",
        reason: str = "",
        now: float | None = None,
    ) -> AuditRecord:
        """A record stamped with ``now`` (default: the current epoch time)."""
        return cls(
            time=_time.time() if now is None else now,
            actor=actor,
            action=action,
            outcome=outcome,
            target=target,
            request_id=request_id,
            reason=reason,
        )

    def to_fields(self) -> dict[str, str]:
        """The record as the exact strings stored in the stream (and covered by the MAC)."""
        return {
            "time": repr(self.time),
            **{name: cast(str, getattr(self, name)) for name in _STR_FIELDS},
        }


@dataclass(frozen=True, slots=True)
class Head:
    """The chain's head: the last record's ``seq`` and ``mac`` (``0``/GENESIS when empty)."""

    seq: int
    mac: str

    def encode(self) -> str:
        """The head key's value: ``"<seq> <mac>"``."""
        return f"{self.seq} {self.mac}"


EMPTY_HEAD: Final = Head(0, GENESIS)


def parse_head(raw: str) -> Head:
    """Parse a head key value; raise :class:`AuditError` (``bad_head``) if malformed."""
    seq_s, _, mac = raw.partition(" ")
    if not (_SEQ_RE.fullmatch(seq_s) or seq_s == "0") or not _MAC_RE.fullmatch(mac):
        raise AuditError("audit head key is malformed", reason="bad_head")
    return Head(int(seq_s), mac)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """A record as stored: its chain link, its MAC and (once written) its stream id."""

    record: AuditRecord
    seq: int
    prev: str
    kid: str
    writer: str
    mac: str
    stream_id: str | None = None

    def to_fields(self) -> dict[str, str]:
        """Every stream field, in :data:`ENTRY_FIELDS` order (no ``writer`` for an entry of
        the format before per-role keys, whose ``writer`` is empty)."""
        link = {"seq": str(self.seq), "prev": self.prev, "kid": self.kid}
        link |= {"writer": self.writer} if self.writer else {}
        return link | self.record.to_fields() | {"mac": self.mac}

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready flat dict (for export as JSON lines and for the admin API)."""
        out: dict[str, object] = {"id": self.stream_id, "seq": self.seq}
        out |= {"prev": self.prev, "kid": self.kid, "writer": self.writer, "mac": self.mac}
        out |= {name: getattr(self.record, name) for name in RECORD_FIELDS}
        return out


#: One role's audit key set (what a writer takes), or several (what a verifier takes).
AuditKeys = KeySet[SymmetricKey] | Iterable[KeySet[SymmetricKey]]


def require_audit_keys(keys: KeySet[SymmetricKey]) -> str:
    """The writing role of an audit key set; refuse a set of any other purpose."""
    writer = audit_writer(keys.purpose)
    if writer is None:
        raise KeyRingError(f"{keys.purpose} keys cannot MAC the audit log", reason="purpose")
    return writer


def audit_key_sets(keys: AuditKeys) -> list[KeySet[SymmetricKey]]:
    """``keys`` as a list of audit key sets, each checked (one set per writing role)."""
    sets = [keys] if isinstance(keys, KeySet) else list(keys)
    for key_set in sets:
        require_audit_keys(key_set)
    return sets


def find_key(keys: AuditKeys, kid: str) -> SymmetricKey | None:
    """The key named ``kid`` in any of the sets, retired or not (history stays verifiable
    after retirement)."""
    for key_set in [keys] if isinstance(keys, KeySet) else keys:
        for key in key_set:
            if key.kid == kid:
                return key
    return None


def _canonical(fields: Mapping[str, str]) -> bytes:
    # A JSON array of strings in fixed order: unambiguous, and easy to rebuild elsewhere.
    values = [_DOMAIN, *(fields[name] for name in ENTRY_FIELDS[:-1])]
    return json.dumps(values, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def compute_mac(key: SymmetricKey, fields: Mapping[str, str]) -> str:
    """HMAC-SHA256 (hex) of the canonical bytes of every entry field but ``mac``."""
    return hmac.digest(key.secret, _canonical(fields), "sha256").hex()  # one-shot, in C


def chain_records(
    head: Head, records: Sequence[AuditRecord], key: SymmetricKey
) -> list[AuditEntry]:
    """Link ``records`` after ``head`` and MAC each with ``key``, as written by the role of
    ``key``'s purpose. Pure: nothing is written."""
    writer = audit_writer(key.purpose)
    if writer is None:
        raise KeyRingError(f"{key.purpose} keys cannot MAC the audit log", reason="purpose")
    entries: list[AuditEntry] = []
    seq, prev = head.seq, head.mac
    for record in records:
        seq += 1
        link = {"seq": str(seq), "prev": prev, "kid": key.kid, "writer": writer}
        mac = compute_mac(key, link | record.to_fields())
        entries.append(AuditEntry(record, seq, prev, key.kid, writer, mac))
        prev = mac
    return entries


def parse_entry(stream_id: str, fields: Mapping[str, str]) -> AuditEntry:
    """Parse stream fields into an :class:`AuditEntry` without checking its MAC.

    Raises :class:`AuditError` (``reason="malformed"``) if a field is missing, extra or
    of the wrong shape; the message names the stream id, never a value. An entry of the
    format before per-role keys (no ``writer`` field) parses with ``writer=""``.
    """
    bad = AuditError(f"audit entry {stream_id} is malformed", reason="malformed")
    legacy = set(fields) == _V1_FIELDS
    if set(fields) != set(ENTRY_FIELDS) and not legacy:
        raise bad
    seq, prev, kid, mac = fields["seq"], fields["prev"], fields["kid"], fields["mac"]
    if not (_SEQ_RE.fullmatch(seq) and _MAC_RE.fullmatch(prev) and _MAC_RE.fullmatch(mac)):
        raise bad
    writer = "" if legacy else fields["writer"]
    if not valid_kid(kid) or (writer not in ROLES and not legacy):
        raise bad
    try:
        record = AuditRecord(
            time=float(fields["time"]),
            actor=fields["actor"],
            action=fields["action"],
            outcome=cast(Outcome, fields["outcome"]),  # checked by AuditRecord itself
            target=fields["target"],
            request_id=fields["request_id"],
            reason=fields["reason"],
        )
    except (AuditError, ValueError) as exc:
        raise bad from exc
    return AuditEntry(record, int(seq), prev, kid, writer, mac, stream_id)
