"""A memory slot where the audit writers of one process tree announce the head they chain to.

Writers that share a stream learn each other's appends only from a conflict: the append
script refuses a batch chained to a head that moved, returns the new head, and the batch
is MACed and sent again (``security.audit.store``). A worker's pool processes commit every
task this way and most of their conflicts are with each other, two commits in flight at
once. With a slot made before the pool forks, a writer announces the head its batch will
make as soon as it has chained it, and a writer about to chain reads the slot first: it
chains after the announced batch, which Redis almost always runs first.

Only an optimisation: the script still compares heads, so whatever the slot holds - an
announced batch Redis then refused, a value half overwritten while it was read - costs at
most the conflict the writer would have had anyway. A slot value is read at a batch's
first attempt only, so a stale one cannot make a writer conflict twice. The head is not a
secret (it is in Redis, readable by every writer); the audit key never comes near the slot.
"""

from __future__ import annotations

import mmap

from security.audit.chain import Head, parse_head
from security.errors import AuditError

__all__ = ["HeadSlot"]

_SIZE = 256  # "<seq> <mac>": a sequence number and a hex MAC fit many times over


class HeadSlot:
    """An anonymous shared mapping: processes forked after it was made see one slot.
    One slot per audit stream (its writers pass it to ``AuditWriter(shared=...)``)."""

    def __init__(self) -> None:
        self._map = mmap.mmap(-1, _SIZE)  # MAP_SHARED | MAP_ANONYMOUS on POSIX

    def read(self) -> Head | None:
        """The announced head, or None if there is none or it does not parse."""
        raw = self._map[:_SIZE].rstrip(b"\0")
        if not raw:
            return None
        try:
            return parse_head(raw.decode("ascii"))
        except (AuditError, UnicodeDecodeError):
            return None

    def announce(self, head: Head) -> None:
        """Announce ``head`` (one copy into the mapping; a reader may see it torn)."""
        raw = head.encode().encode("ascii")
        if len(raw) <= _SIZE:
            self._map[:_SIZE] = raw.ljust(_SIZE, b"\0")

    def withdraw(self, announced: Head, actual: Head) -> None:
        """Replace ``announced`` (a batch Redis refused) by the head Redis has, unless
        another writer has announced since."""
        if self.read() == announced:
            self.announce(actual)
