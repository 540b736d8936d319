"""What keeps ``POST /v1/token`` answering under a password-guessing flood.

Every grant attempt costs one scrypt check (~50-150 ms of CPU), so the number of checks a
process runs at once is capped by :class:`HashGate`, in two lanes:

* the *clean* lane, for sources (client addresses) with no recent failed attempt: a few slots
  and a short, bounded queue, and at most one place per source;
* the *suspect* lane, for sources that failed recently: fewer slots and no queue at all -
  when it is full the answer is an immediate 503 with ``Retry-After``.

A flood of wrong secrets therefore competes with itself, not with clients that get their
secret right. :class:`FailureCounter` counts failed attempts per source and per
(client id, source): a client id is locked only for the source that guessed wrong, so nobody
can lock a client out from elsewhere.

Note: a source with no failure yet starts in the clean lane, so an attacker with many
addresses can fill it briefly (one scrypt per fresh address); the queue bound turns that into
fast 503s, never into unbounded waiting.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import limits
import redis.asyncio

from gateway.stores.clients import is_valid_client_id
from security.errors import TaskgateError
from workers.contract.keys import TOKEN_FAILURES_PREFIX

__all__ = [
    "FailureCounter",
    "FailureState",
    "HashBusyError",
    "HashGate",
    "failure_key_pair",
    "failure_key_source",
    "source_key_part",
]

_PREFIX = TOKEN_FAILURES_PREFIX


class HashBusyError(TaskgateError):
    """Every slot of the lane is taken (and its queue is full or the wait ran out)."""

    default_reason = "busy"


def source_key_part(address: str) -> str:
    """``address`` in canonical form, or ``unknown``: the only source text put in a key."""
    try:
        return ipaddress.ip_address(address).compressed
    except ValueError:
        return "unknown"


def failure_key_source(source: str) -> str:
    """``tg:token:fail:ip:{source}``: failed grants from one address (a counter with a TTL)."""
    return f"{_PREFIX}ip:{source_key_part(source)}"


def failure_key_pair(client_id: str, source: str) -> str:
    """``tg:token:fail:client:{client_id}:{source}``: failed grants for one id from one address.

    Refuses an id that is not well formed: nothing a caller typed reaches a key name.
    """
    if not is_valid_client_id(client_id):
        raise ValueError("client id is not well formed")
    return f"{_PREFIX}client:{client_id}:{source_key_part(source)}"


class HashGate:
    """Per-process cap on concurrent secret checks, with a clean and a suspect lane."""

    def __init__(self, *, slots: int, suspect_slots: int, wait_seconds: float) -> None:
        if slots < 1 or suspect_slots < 1 or wait_seconds < 0:
            raise ValueError("hash gate needs at least one slot per lane and a wait >= 0")
        self._clean = asyncio.Semaphore(slots)
        self._suspect = asyncio.Semaphore(suspect_slots)
        self._wait = wait_seconds
        self._max_waiting = 4 * slots
        self._waiting = 0
        self._clean_sources: set[str] = set()  # sources with a place in the clean lane

    @asynccontextmanager
    async def slot(self, *, suspect: bool, source: str) -> AsyncIterator[None]:
        """Hold one slot of the lane for the duration; raise :class:`HashBusyError` if none.

        A source holds at most one place (running or queued) in the clean lane: its other
        concurrent attempts are suspect, so one address cannot fill the clean lane.
        """
        clean = not suspect and source not in self._clean_sources
        lane = self._clean if clean else self._suspect
        if clean:
            self._clean_sources.add(source)
        try:
            if not lane.locked():
                await lane.acquire()  # a free slot: taken without suspending
            elif not clean or self._waiting >= self._max_waiting:
                raise HashBusyError("no free slot for a secret check", reason="busy")
            else:
                await self._queue(lane)
            try:
                yield
            finally:
                lane.release()
        finally:
            if clean:
                self._clean_sources.discard(source)

    async def _queue(self, lane: asyncio.Semaphore) -> None:
        self._waiting += 1
        try:
            await asyncio.wait_for(lane.acquire(), timeout=self._wait)
        except TimeoutError:
            raise HashBusyError("waited too long for a secret check", reason="busy") from None
        finally:
            self._waiting -= 1


@dataclass(frozen=True)
class FailureState:
    """Recent failures of one source and of one (client id, source) pair, with their TTLs."""

    source: int
    source_ttl: int
    pair: int
    pair_ttl: int


class FailureCounter:
    """Failed grant attempts in Redis: ``INCR`` + ``EXPIRE NX``, read with ``GET`` + ``TTL``.

    A window starts at the first failure and is never extended by later ones, so a locked
    pair is free again at most one window after its first failure.
    """

    def __init__(self, *, per_source: str, per_pair: str) -> None:
        source_item, pair_item = limits.parse(per_source), limits.parse(per_pair)
        self.source_limit, self.source_window = source_item.amount, source_item.get_expiry()
        self.pair_limit, self.pair_window = pair_item.amount, pair_item.get_expiry()

    async def read(self, client: redis.asyncio.Redis, client_id: str, ip: str) -> FailureState:
        """The current counts (one round trip)."""
        async with client.pipeline(transaction=False) as pipe:
            pipe.get(failure_key_source(ip))
            pipe.ttl(failure_key_source(ip))
            pipe.get(failure_key_pair(client_id, ip))
            pipe.ttl(failure_key_pair(client_id, ip))
            source, source_ttl, pair, pair_ttl = await pipe.execute()
        return FailureState(_count(source), max(0, source_ttl), _count(pair), max(0, pair_ttl))

    async def failed(self, client: redis.asyncio.Redis, ip: str, client_id: str = "") -> None:
        """Count one failure for the source and, when the id is well formed, for the pair.

        MULTI/EXEC: a counter never exists without its TTL (that would be a lock for good).
        """
        async with client.pipeline(transaction=True) as pipe:
            pipe.incr(failure_key_source(ip))
            pipe.expire(failure_key_source(ip), self.source_window, nx=True)
            if is_valid_client_id(client_id):
                pipe.incr(failure_key_pair(client_id, ip))
                pipe.expire(failure_key_pair(client_id, ip), self.pair_window, nx=True)
            await pipe.execute()

    async def succeeded(self, client: redis.asyncio.Redis, client_id: str, ip: str) -> None:
        """The right secret from this source: forget this pair's earlier typos."""
        await client.delete(failure_key_pair(client_id, ip))


def _count(raw: bytes | str | None) -> int:
    if raw is None:
        return 0
    try:
        return max(0, int(raw))
    except ValueError:
        return 1 << 30  # a counter that is not a number was written by someone else: locked
