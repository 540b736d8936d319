"""What an audit append carries besides its record: Redis writes run in the same atomic
script call (a submission's enqueue, a task's completion), and how they travel packed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgpack

from security.audit.chain import AuditEntry
from security.errors import AuditError

__all__ = [
    "LEASE_LOST",
    "Committed",
    "Earlier",
    "Write",
    "check_references",
    "held",
    "pack",
    "pack_record_writes",
]

# The outcome of a record whose :func:`held` precondition failed (its later writes skipped).
LEASE_LOST: Final = "lease lost"


@dataclass(frozen=True)
class Earlier:
    """An argument that repeats one of an earlier write's arguments (same record), so a large
    value - a broker message, a sealed result - crosses the network once however many
    writes store it. ``write`` is the :attr:`Write.name` of that earlier write, ``arg``
    the index in its ``args``."""

    write: str
    arg: int = 0


@dataclass(frozen=True)
class Write:
    """A Redis command run by the append script right after its record is appended.

    Arguments are text or bytes (format numbers yourself: ``repr`` of a float is exact), or
    :class:`Earlier` to repeat an argument of an earlier write of the same record - the one
    whose ``name`` it gives (a name is unique among the record's writes).
    """

    command: str
    keys: tuple[str, ...] = ()
    args: tuple[str | bytes | Earlier, ...] = ()
    name: str = ""


def held(key: str, value: str) -> Write:
    """A precondition, not a Redis command: the record's later writes run only if ``key``
    holds ``value`` or nothing - a lease still the writer's, or one that lapsed with no one
    else taking it. Otherwise they are skipped and the record's outcome is :data:`LEASE_LOST`
    (its audit record stands). Put it first to make all of the record's writes depend on it.
    """
    return Write("HELD", (key,), (value,))


@dataclass(frozen=True)
class Committed:
    """A record as written, and the error of the attached write Redis refused (if any)."""

    entry: AuditEntry
    write_error: str | None = None


def check_references(writes: Sequence[Write]) -> None:
    """Refuse (:class:`AuditError` ``bad_record``) a record whose :class:`Earlier` names no
    earlier write of it (itself, a later one, a misspelt name), or an argument that write
    does not have, or whose writes share a name."""
    named: dict[str, Write] = {}
    for n, write in enumerate(writes):
        for arg in write.args:
            if not isinstance(arg, Earlier):
                continue
            target = named.get(arg.write)
            if target is None:
                raise AuditError(
                    f"write {n} ({write.command}): {arg} names no earlier write of its record",
                    reason="bad_record",
                )
            if not 0 <= arg.arg < len(target.args):
                raise AuditError(
                    f"write {n} ({write.command}): {arg}: write {arg.write!r} has no "
                    f"argument {arg.arg}",
                    reason="bad_record",
                )
        if write.name:
            if write.name in named:
                raise AuditError(
                    f"two writes of one record are named {write.name!r}", reason="bad_record"
                )
            named[write.name] = write


def pack_record_writes(writes: Sequence[Write]) -> list[list[Any]]:
    """``[command, *keys, *args]`` per write; an :class:`Earlier` becomes the 1-based
    ``[write, position]`` of the repeated value in that flat form (the script resolves it).
    The references must hold (:func:`check_references`)."""
    return [
        [
            w.command,
            *w.keys,
            *(_position(writes, a) if isinstance(a, Earlier) else a for a in w.args),
        ]
        for w in writes
    ]


def _position(writes: Sequence[Write], ref: Earlier) -> list[int]:
    for n, write in enumerate(writes):
        if write.name == ref.write:
            return [n + 1, 1 + len(write.keys) + ref.arg + 1]
    raise AuditError(f"{ref} names no write of its record", reason="bad_record")


def pack(document: Any) -> bytes:
    """MessagePack without the bin type (Redis's Lua cmsgpack reads str and bytes alike)."""
    packed: bytes = msgpack.packb(document, use_bin_type=False)
    return packed
