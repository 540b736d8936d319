"""The compare-and-append protocol both audit writers (:mod:`security.audit.store`) share.

The append script (``audit_append.lua``) touches the stream, its head key and its turn key.
:class:`Chain` is one writer's side of it: the head it last saw, the script's arguments
for a batch MAC'd after that head, and the reading of the script's reply - the entries
written, or the newer head another writer left (``conflict``) or the turn another writer
holds (``wait``). After :data:`TURN_AFTER` conflicts in a row a writer asks for an
exclusive turn, so that it cannot keep losing the race.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from typing import Any, Final

from security.audit.chain import (
    EMPTY_HEAD,
    ENTRY_FIELDS,
    AuditEntry,
    AuditRecord,
    Head,
    chain_records,
    parse_head,
    require_audit_keys,
)
from security.audit.writes import Committed, Write, check_references, pack, pack_record_writes
from security.errors import AuditError, ConfigError
from security.keys import KeySet, SymmetricKey

__all__ = ["TURN_AFTER", "Chain", "Item", "head_key", "text", "turn_key"]

TURN_AFTER: Final = 2  # conflicts in a row before a writer asks for an exclusive turn

# A record and its attached writes.
Item = tuple[AuditRecord, Sequence[Write]]


_FIELD_NAMES: Final = pack(list(ENTRY_FIELDS))


def head_key(stream: str) -> str:
    """The key holding ``stream``'s head."""
    return f"{stream}:head"


def text(value: bytes | str) -> str:
    """A Redis reply value as text, whether or not the client decodes responses."""
    # Bytes that are not UTF-8 were not written by a writer: "replace" makes them fail
    # the MAC (or the head parse) instead of crashing the verifier.
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def turn_key(stream: str) -> str:
    """The key naming the writer that has an exclusive turn on ``stream``."""
    return f"{stream}:turn"


class Chain:
    """The state both writers share: the cached head and the script's arguments/reply."""

    def __init__(self, keys: KeySet[SymmetricKey], stream: str, max_attempts: int) -> None:
        require_audit_keys(keys)
        if max_attempts < 1:
            raise ConfigError("audit max_attempts", "must be at least 1", "pass a positive count")
        self.keys = keys
        self.stream = stream
        self.script_keys = [stream, head_key(stream), turn_key(stream)]
        self.writer_id = secrets.token_hex(8)
        self.max_attempts = max_attempts
        self.head = EMPTY_HEAD
        self.appended = 0  # records this writer appended (metrics)
        self.conflicts = 0  # appends that lost the race for the head or had to wait

    def items(self, items: Iterable[Item]) -> list[Item]:
        out = list(items)
        for record, writes in out:
            if not isinstance(record, AuditRecord):
                raise AuditError("only AuditRecord instances can be audited", reason="bad_record")
            if not all(isinstance(w, Write) for w in writes):
                raise AuditError("attached writes must be Write instances", reason="bad_record")
            check_references(writes)
        return out

    @staticmethod
    def pack_writes(items: Sequence[Item]) -> bytes:
        """Every record's attached writes, packed once whatever the retries."""
        return pack([pack_record_writes(writes) for _, writes in items])

    def prepare(
        self,
        items: Sequence[Item],
        packed_writes: bytes,
        *,
        attempt: int = 0,
        fence: bytes = b"",
    ) -> tuple[list[AuditEntry], list[str], list[Any]]:
        entries = chain_records(self.head, [record for record, _ in items], self.keys.current())
        new_head = Head(entries[-1].seq, entries[-1].mac)
        args: list[Any] = [self.head.encode(), EMPTY_HEAD.encode(), new_head.encode()]
        args += [self.writer_id, "1" if attempt >= TURN_AFTER else "0", _FIELD_NAMES]
        values = [list(entry.to_fields().values()) for entry in entries]  # ENTRY_FIELDS order
        args += [pack(values), packed_writes]
        if fence:
            args.append(fence)
        return entries, self.script_keys, args

    def observe(self, raw: str | None) -> None:
        """Adopt a head read elsewhere (say, in another script's reply) if it is newer.

        It only saves a conflict: a stale or wrong value costs one, since the append
        script compares against the real head. A malformed value is ignored here.
        """
        if not raw:
            return
        try:
            head = parse_head(raw)
        except AuditError:
            return
        if head.seq > self.head.seq:
            self.head = head

    def accept(self, reply: Any, entries: list[AuditEntry]) -> list[Committed] | str:
        """The written entries (with stream ids), or - having learned the newer head - the
        reply's status: ``conflict`` (another writer appended first) or ``wait`` (another
        writer holds the turn)."""
        status = text(reply[0]) if isinstance(reply, list) and reply else ""
        if status == "ok" and len(reply) == 2 * len(entries) + 1:
            ids, outcomes = reply[1 : len(entries) + 1], reply[len(entries) + 1 :]
            written = [
                Committed(
                    AuditEntry(e.record, e.seq, e.prev, e.kid, e.writer, e.mac, text(i)),
                    None if outcome == 1 else text(outcome)[:200],
                )
                for e, i, outcome in zip(entries, ids, outcomes, strict=True)
            ]
            last = written[-1].entry
            self.head = Head(last.seq, last.mac)
            self.appended += len(written)
            return written
        if status in {"conflict", "wait"} and len(reply) == 2:
            self.head = parse_head(text(reply[1]))
            self.conflicts += 1
            return status
        if status == "fenced":
            raise AuditError("a fence condition of the append did not hold", reason="fenced")
        if status == "missing":
            raise AuditError(
                f"audit stream {self.stream} exists but its head key is gone", reason="head_missing"
            )
        raise AuditError("unexpected reply from the audit append script", reason="write_failed")

    def exhausted(self) -> AuditError:
        return AuditError("audit append kept conflicting; giving up", reason="contention")
