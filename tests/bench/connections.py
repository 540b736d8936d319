"""How a load run's connections are spread over a server's worker processes (Linux /proc).

uvicorn's worker processes share one listening socket: whichever process accepts first
takes a connection, and a closed-loop load generator opens all its connections at once
and keeps them. The spread is seldom even (31/1 and 25/7 of 32 are common) and now and
then every connection lands on one of two workers: a 2-worker server then serves at its
1-worker rate. The bench samples the spread once in each measured run, prints it beside
the rate and runs again a run that left a worker without a connection.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

__all__ = ["ConnectionSpread", "established_by_process", "process_group", "sample_later"]

_ESTABLISHED = "01"  # the st column of /proc/net/tcp{,6}


def _established_inodes(port: int) -> set[str]:
    """Socket inodes of established TCP connections whose local port is ``port``."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == _ESTABLISHED and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes


def process_group(pgid: int) -> dict[int, list[str]]:
    """Every live process of group ``pgid``: its ``/proc/<pid>/stat`` fields after
    "pid (comm) " (state, ppid, pgrp, ...; utime and stime at indexes 11 and 12)."""
    members: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()
        if int(fields[2]) == pgid:
            members[int(entry.name)] = fields
    return members


def established_by_process(pgid: int, port: int) -> dict[int, int]:
    """For each process of group ``pgid`` holding connections to ``port``, how many."""
    inodes = _established_inodes(port)
    counts: dict[int, int] = {}
    for pid in process_group(pgid):
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        held = 0
        for fd in fds:
            try:
                target = fd.readlink().name
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                held += 1
        if held:
            counts[pid] = held
    return counts


class ConnectionSpread:
    """The counts one sample found, largest first (``[]`` before the sample was taken)."""

    def __init__(self) -> None:
        self.counts: list[int] = []

    def take(self, pgid: int, port: int) -> None:
        self.counts = sorted(established_by_process(pgid, port).values(), reverse=True)

    def __str__(self) -> str:
        return "/".join(map(str, self.counts)) or "?"

    def uneven(self, workers: int) -> bool:
        """Some of ``workers`` processes held no connection: the run measured fewer."""
        return sum(self.counts) > 0 and len(self.counts) < workers


def sample_later(delay: float, sample: Callable[[], None]) -> threading.Timer:
    """Run ``sample`` once, ``delay`` seconds from now, in a daemon thread."""
    timer = threading.Timer(delay, sample)
    timer.daemon = True
    timer.start()
    return timer
