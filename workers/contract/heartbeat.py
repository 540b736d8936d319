"""Worker liveness from heartbeats: who counts as alive, readable by gateway and workers.

Each worker instance (one ``taskgate worker`` main process) keeps one member of the sorted
set :data:`~workers.contract.keys.WORKERS`: its id ``{hostname}:{pid}``, scored by the
Unix time of its last beat (``workers.heartbeat`` writes it). A worker whose last beat is
older than the lapse counts as gone, whether it stopped cleanly (it removes its member) or
was killed (its member ages out). Dependency-free, so the gateway imports it without Celery.

Note: beats are scored with the worker's clock and read against the reader's; hosts keep
their clocks in sync (sealed envelopes and tokens already rely on it), and the lapse of
several intervals absorbs small skew.
"""

from __future__ import annotations

import os
import socket
from typing import Protocol, TypeVar

from workers.contract.keys import WORKERS

__all__ = ["WORKERS", "live_workers", "worker_id"]

_T_co = TypeVar("_T_co", covariant=True)


class _CountsScores(Protocol[_T_co]):
    """What :func:`live_workers` needs of a Redis client, sync (int) or asyncio (awaitable)."""

    def zcount(self, name: str, min: float | str, max: float | str) -> _T_co: ...


def worker_id(hostname: str | None = None, pid: int | None = None) -> str:
    """This worker instance's heartbeat member: ``{hostname}:{pid}`` (ids only)."""
    host = hostname if hostname is not None else socket.gethostname()
    return f"{host}:{pid if pid is not None else os.getpid()}"


def live_workers(client: _CountsScores[_T_co], now: float, lapse: float) -> _T_co:
    """How many workers beat within ``lapse`` seconds before ``now`` (one ZCOUNT).

    With a synchronous client the count, with an asyncio one an awaitable of it. Errors
    (Redis unreachable, a key of the wrong type) propagate: the caller fails closed.
    """
    if lapse <= 0:
        raise ValueError("the heartbeat lapse must be positive")
    return client.zcount(WORKERS, now - lapse, "+inf")
