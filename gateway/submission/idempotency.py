"""Idempotency-Key reservations are short leases; accepted submissions keep their key a day.

A submission with an Idempotency-Key reserves the key in its check (round trip 1,
:mod:`gateway.submission.checks`) with a *pending* record that expires after the lease
(``TASKGATE_IDEMPOTENCY_LEASE``, 5 s by default). Its commit (round trip 2) replaces it
with the *done* record, kept :data:`IDEMPOTENCY_TTL` (24 h), under a
:func:`~security.audit.writes.held` precondition: a commit whose key another request took
after its lease lapsed writes nothing and is answered 409.

While a request is in flight longer than a third of the lease, :class:`LeaseKeeper`
extends its reservation (script calls from a background loop, never on the request's
path), so a slow request keeps its key. A gateway that died, or lost Redis, between the
two round trips leaves a reservation that lapses within the lease: the client's retry with
the same key is then a new submission, not a 409 for a day.

Each pending record names the request's task id, so it is the request's own lease token:
renewing, releasing and committing act only on a record that is still the request's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

from gateway.background import cancel_and_wait
from gateway.submission.script_batcher import LuaScript, ScriptBatcher
from security.lua import lua_script

__all__ = ["IDEMPOTENCY_TTL", "LeaseKeeper", "pending_record", "release"]

log = logging.getLogger("taskgate.gateway")

IDEMPOTENCY_TTL = 24 * 3600

# What it does, its KEYS and ARGV: the comment at the top of idempotency_renew.lua.
_RENEW = LuaScript(lua_script("gateway.submission", "idempotency_renew.lua"))

# What it does, its KEYS and ARGV: the comment at the top of idempotency_release.lua.
_RELEASE = LuaScript(lua_script("gateway.submission", "idempotency_release.lua"))


def pending_record(body_hash: str, task: str, task_id: str) -> str:
    """The reservation a request writes: what a duplicate is compared with (body, task),
    and the task id that makes it this request's alone."""
    return json.dumps({"state": "pending", "body": body_hash, "task": task, "task_id": task_id})


async def release(scripts: ScriptBatcher, key: str, pending: str) -> bool:
    """Delete the reservation if it is still ``pending`` (a refused request frees its key;
    one whose lease lapsed and was taken by another request leaves that one alone)."""
    return bool(await scripts.call(_RELEASE, [key], [pending]))


class LeaseKeeper:
    """The reservations this process's requests hold, renewed while they are in flight."""

    def __init__(
        self,
        scripts: ScriptBatcher,
        *,
        lease: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lease = lease
        self._scripts = scripts
        self._clock = clock
        self._held: dict[str, tuple[str, float]] = {}  # key -> (pending record, set at)
        self._task: asyncio.Task[None] | None = None

    @property
    def lease_ms(self) -> int:
        return round(self.lease * 1000)

    def hold(self, key: str, pending: str) -> None:
        """A request reserved ``key`` with ``pending`` just now (no Redis call)."""
        self._held[key] = (pending, self._clock())
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="idempotency-leases")

    def drop(self, key: str) -> None:
        """The request is answered: its reservation needs no more renewal."""
        self._held.pop(key, None)

    def held(self) -> int:
        return len(self._held)

    async def renew_due(self) -> int:
        """Extend every reservation set or renewed a third of a lease ago or earlier; the
        ones another request has taken are no longer renewed. Returns how many were kept."""
        now = self._clock()
        due = [
            (key, pending)
            for key, (pending, since) in list(self._held.items())
            if now - since >= self.lease / 3
        ]
        if not due:
            return 0
        replies = await asyncio.gather(
            *(self._scripts.call(_RENEW, [key], [pending, self.lease_ms]) for key, pending in due),
            return_exceptions=True,
        )
        kept = 0
        for (key, pending), reply in zip(due, replies, strict=True):
            if isinstance(reply, BaseException):
                continue  # retried next tick, while the lease lasts
            current = self._held.get(key)
            if current is None or current[0] != pending:
                continue  # answered meanwhile
            if reply == 1:
                self._held[key] = (pending, now)
                kept += 1
            else:
                self._held.pop(key, None)
        failed = sum(isinstance(reply, BaseException) for reply in replies)
        if failed:
            log.warning("could not renew %d idempotency reservation(s)", failed)
        return kept

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                await self.renew_due()
            except Exception as exc:  # noqa: BLE001 - the loop must outlive one bad tick
                log.warning("idempotency lease renewal failed (%s)", type(exc).__name__)

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
