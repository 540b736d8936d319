"""Refusals of unauthenticated or rate-limited requests, aggregated per window and source.

:class:`RefusalAggregator` sits behind :meth:`GatewayState.record`: a record that is such
a refusal (see :func:`is_aggregated`) is counted by
:class:`security.audit.refusals.RefusalCounter` instead of being chained one by one. The
first refusal of a group in a window is chained at once; a background task summarises
each window once it has closed (one record per group, with the count), so a flood of
bad tokens or 429s costs a bounded number of audit records (see ``docs/audit.md``).

The source is the client address as rate limits see it (``gateway.http.clientip``: the socket
peer, or ``X-Forwarded-For`` behind a trusted proxy), read from the request's scope; a
claimed client id is part of the group only if it is well formed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections.abc import Callable

from starlette.requests import Request

from gateway.background import cancel_and_wait
from gateway.http.clientip import client_ip
from gateway.http.middleware import request_scope_var
from gateway.stores.clients import is_valid_client_id
from gateway.submission.audit_batcher import AuditBatcher
from security.audit import AsyncAuditWriter, AuditRecord, Write
from security.audit.actions import AuditAction
from security.audit.refusals import RefusalCounter, RefusalGroup, summary_records

__all__ = ["RefusalAggregator", "group_actor", "is_aggregated"]

log = logging.getLogger("taskgate.audit")
_AGGREGATED = frozenset({AuditAction.AUTH_REFUSED, AuditAction.RATE_LIMIT_HIT})
_BAD_CREDENTIALS = frozenset({"invalid_client", "malformed_client_id"})


def is_aggregated(action: str, outcome: str, reason: str) -> bool:
    """True for a refusal of unauthenticated or rate-limited traffic: a bad or missing
    token, a rate limit hit, a token request with bad client credentials or a client id
    that is not one."""
    if outcome != "denied":
        return False
    return action in _AGGREGATED or (
        action == AuditAction.TOKEN_ISSUE and reason in _BAD_CREDENTIALS
    )


def _source_ip(record_actor: str, trusted: tuple[str, ...]) -> str | None:
    scope = request_scope_var.get()
    if scope is not None:
        return client_ip(Request(scope), trusted)
    if record_actor.startswith("ip:"):
        return record_actor[3:]
    return None


def group_actor(record_actor: str, trusted: tuple[str, ...] = ()) -> str:
    """``client:<id> ip:<address>``, ``ip:<address>``, ``client:<id>`` or ``anonymous``
    (``admin`` for the admin token): the claimed id only if well formed, so a flood cannot
    mint groups with made-up ids."""
    parts = []
    claimed = record_actor.removeprefix("client:") if record_actor.startswith("client:") else ""
    if is_valid_client_id(claimed):
        parts.append(f"client:{claimed}")
    elif record_actor == "admin":  # the admin token, rate-limited on the audit verify
        parts.append("admin")
    ip = _source_ip(record_actor, trusted)
    if ip:
        parts.append(f"ip:{ip[:64]}")
    return " ".join(parts) or "anonymous"


class RefusalAggregator:
    """Count refusals, chain each group's first per window, summarise closed windows."""

    def __init__(
        self,
        counter: RefusalCounter,
        batcher: AuditBatcher,
        writer: AsyncAuditWriter,
        *,
        trusted_proxies: tuple[str, ...] = (),
        grace: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.counter = counter
        self._batcher = batcher
        self._writer = writer
        self._trusted = trusted_proxies
        self._grace = grace
        self._clock = clock
        self._token = secrets.token_hex(8)
        self._task: asyncio.Task[None] | None = None

    async def refuse(self, record: AuditRecord) -> None:
        """Count ``record``'s refusal; chain it if it is its group's first in the window."""
        group = RefusalGroup(record.action, group_actor(record.actor, self._trusted), record.target)
        if await self.counter.count(group, record.reason, now=record.time) == 1:
            await self._batcher.record(dataclasses.replace(record, actor=group.actor))

    async def flush(self) -> int:
        """Summarise every closed window this process can claim; the records appended."""
        appended = 0
        now = self._clock()
        for window in await self.counter.closed_windows(now=now, grace=self._grace):
            summaries = await self.counter.claim(window, self._token)
            if summaries is None:
                continue  # another process is on it
            _, closing, lock = self.counter.keys(window)
            records = summary_records(window, self.counter.window, summaries, now=now)
            done = Write("DEL", (closing, lock))
            if records:
                # The counters go in the same script call as the last summary: a crash
                # before it leaves them to be summarised again, never lost.
                items = [(r, ()) for r in records[:-1]] + [(records[-1], (done,))]
                await self._writer.commit_many(items)
            else:
                await self.counter.delete(closing, lock)
            appended += len(records)
        return appended

    def start(self, interval: float) -> None:
        """Summarise closed windows every ``interval`` seconds in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(interval), name="audit-refusals")

    async def stop(self) -> None:
        """Stop summarising (open windows stay in Redis for the next run or process)."""
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.flush()
            except Exception as exc:  # noqa: BLE001 - the counters stay in Redis; retried next turn
                log.error("audit refusal summary failed: %s", type(exc).__name__)
