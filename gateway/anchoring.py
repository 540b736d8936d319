"""Automatic anchoring: the gateway signs the audit head and keeps it outside Redis.

Every second :class:`AnchorJob` looks at the head; once it moved ``every`` records past
the newest anchor, or ``interval`` seconds after it, the job verifies the chain from that
anchor to the head (incrementally: only what was appended since), signs the verified head
with the gateway's Ed25519 key and appends it to the anchor file
(:mod:`security.audit.anchor`). A chain that does not verify is never anchored: the job
logs the reason and tries again later, and every verify reports the break.

Also here: :func:`newest_anchor` (the verify route reads it) and :class:`VerifyLimiter`,
the HTTP verify's fixed-window rate limit per caller (``tg:audit:verify-limit:*``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

import limits
import redis.asyncio

from gateway.background import cancel_and_wait
from security.audit.anchor import Anchor, append_anchor, newest, parse_anchor, read_anchors
from security.audit.archive import base_key
from security.audit.chain import EMPTY_HEAD, Head, parse_head
from security.audit.checkpoint import sign_checkpoint
from security.audit.store import DEFAULT_STREAM, head_key, text
from security.audit.walk import WalkReport, averify_walk
from security.errors import AuditError
from security.keystore import KeyRing

__all__ = ["AnchorJob", "VerifyLimiter", "averify_from_anchor", "newest_anchor"]

log = logging.getLogger("taskgate.audit")


async def newest_anchor(path: Path, ring: KeyRing, stream: str = DEFAULT_STREAM) -> Anchor | None:
    """The newest anchor in ``path`` (read off the event loop); raises if one is forged."""
    anchors = await asyncio.to_thread(read_anchors, path, ring.signing)
    return newest(anchors, stream)


async def _base(client: redis.asyncio.Redis, ring: KeyRing, stream: str) -> Anchor | None:
    raw = await client.get(base_key(stream))
    return None if raw is None else parse_anchor(text(raw), ring.signing, where=base_key(stream))


async def averify_from_anchor(
    client: redis.asyncio.Redis,
    ring: KeyRing,
    anchor: Anchor | None,
    *,
    stream: str = DEFAULT_STREAM,
    after: str | None = None,
    from_start: bool = False,
    limit: int | None = None,
) -> WalkReport:
    """Verify from ``after`` (a cursor), else from ``anchor`` (which must still be live)
    unless ``from_start``, else from the start of the live log (the signed base of a
    trimmed one); ``anchor`` is also what the end of the walk must reach."""
    keys = ring.audit_keys()
    pinned = None if anchor is None else anchor.checkpoint.head
    if after is not None:
        return await averify_walk(
            client, keys, stream=stream, pinned=pinned, resume=(after, None), limit=limit
        )
    base = await _base(client, ring, stream)
    if (
        not from_start
        and anchor is not None
        and anchor.stream_id is not None
        and (base is None or anchor.checkpoint.seq >= base.checkpoint.seq)
    ):
        resume = (anchor.stream_id, anchor.checkpoint.head)
        return await averify_walk(
            client, keys, stream=stream, pinned=pinned, resume=resume, limit=limit
        )
    start = EMPTY_HEAD if base is None else base.checkpoint.head
    return await averify_walk(client, keys, stream=stream, start=start, pinned=pinned, limit=limit)


class AnchorJob:
    """Take a verified, signed checkpoint of the head every ``every`` records or
    ``interval`` seconds, whichever comes first, into ``path``."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        ring: KeyRing,
        path: Path,
        *,
        interval: float,
        every: int,
        stream: str = DEFAULT_STREAM,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client, self._ring, self._path = client, ring, path
        self._interval, self._every, self._stream, self._clock = interval, every, stream, clock
        self._task: asyncio.Task[None] | None = None
        self._seen: tuple[int, int] | None = None  # the anchor file's (size, mtime) when read
        self._last: Anchor | None = None
        self._behind = False  # logged once, not every second

    async def _newest(self) -> Anchor | None:
        """The newest anchor, re-read (and re-verified) only when the file changed."""
        try:
            st = await asyncio.to_thread(self._path.stat)
            seen: tuple[int, int] | None = (st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            seen = None
        if seen != self._seen or seen is None:
            self._last = await newest_anchor(self._path, self._ring, self._stream)
            self._seen = seen
        return self._last

    async def run_once(self) -> Anchor | None:
        """Anchor the head if it is due; the anchor appended, or None."""
        raw = await self._client.get(head_key(self._stream))
        if raw is None:
            return None
        head = parse_head(text(raw))
        last = await self._newest()
        if last is not None:
            if last.checkpoint.seq > head.seq and not self._behind:
                log.error(
                    "audit head seq %d is behind the newest anchor (seq %d): the log was cut"
                    " or wiped; not anchoring until an operator looks (docs/audit.md)",
                    head.seq,
                    last.checkpoint.seq,
                )
            self._behind = last.checkpoint.seq > head.seq
            if last.checkpoint.seq >= head.seq:
                return None
            moved = head.seq - last.checkpoint.seq
            if moved < self._every and self._clock() - last.checkpoint.time < self._interval:
                return None
        walk = await averify_from_anchor(self._client, self._ring, last, stream=self._stream)
        report = walk.report
        if not report.ok:
            bad = report.first_bad
            reason = "unknown" if bad is None else f"{bad.reason} {bad.detail}".strip()
            log.error("audit chain does not verify, not anchoring: %s", reason)
            return None
        if report.head_seq == 0 or (last is not None and report.head_seq <= last.checkpoint.seq):
            return None
        signed = sign_checkpoint(
            Head(report.head_seq, report.head_mac),
            self._ring.signing.current(),
            stream=self._stream,
            now=self._clock(),
        )
        anchor = Anchor(signed, walk.last_id)
        await asyncio.to_thread(append_anchor, self._path, anchor)
        return anchor

    def start(self) -> None:
        """Check every second in the background (not at all if ``interval`` is 0)."""
        if self._task is None and self._interval > 0:
            self._task = asyncio.create_task(self._run(), name="audit-anchor")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await self.run_once()
            except (AuditError, OSError, redis.RedisError) as exc:
                log.error("audit anchoring failed: %s", type(exc).__name__)


class VerifyLimiter:
    """A fixed-window limit per caller on the HTTP verify, counted in Redis."""

    def __init__(
        self, client: redis.asyncio.Redis, limit: str, *, stream: str = DEFAULT_STREAM
    ) -> None:
        self._item = limits.parse(limit)
        self._client = client
        self._prefix = f"{stream}:verify-limit"

    async def allow(self, actor: str, *, now: float | None = None) -> tuple[bool, int]:
        """Count one call by ``actor``; (allowed, seconds until the window resets)."""
        period = self._item.get_expiry()
        when = time.time() if now is None else now
        window = int(when // period)
        who = hashlib.sha256(actor.encode()).hexdigest()[:16]
        key = f"{self._prefix}:{who}:{window}"
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, period + 1)
            count, _ = await pipe.execute()
        return int(count) <= self._item.amount, max(1, int((window + 1) * period - when))
