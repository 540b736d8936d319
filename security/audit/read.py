"""Read the audit stream for export, ``tail`` and the admin API's filtered, paged listing.

Reading parses entries but does not check MACs: that is :func:`security.audit.verify`'s
job. An entry that does not even parse raises :class:`AuditError` (``malformed``) with
its stream id; run ``taskgate audit verify`` to learn more.

Pagination is by stream id: pass a page's ``next_after`` as the next call's ``after``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import redis
import redis.asyncio

from security.audit.chain import AuditEntry, Outcome, parse_entry
from security.audit.store import DEFAULT_STREAM, text
from security.errors import AuditError

__all__ = [
    "AuditPage",
    "AuditQuery",
    "RawEntry",
    "afind_newest",
    "afind_records",
    "aiter_records",
    "atail",
    "entry_fields",
    "find_records",
    "iter_records",
    "tail",
    "unavailable",
]

PAGE: Final = 500
# What XRANGE yields per entry (redis-py types allow None for entries deleted meanwhile).
RawEntry = tuple[bytes | str | None, Mapping[bytes | str, bytes | str] | None]


def entry_fields(raw: RawEntry) -> tuple[str, dict[str, str]]:
    """A stream entry's id and fields as text (no fields: an entry that cannot parse)."""
    stream_id, fields = raw
    return text(stream_id or ""), {text(k): text(v) for k, v in (fields or {}).items()}


def _parse(raw: RawEntry) -> AuditEntry:
    return parse_entry(*entry_fields(raw))


def _lower(after: str | None) -> str:
    return "-" if after is None else f"({after}"  # "(" makes the bound exclusive


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Filters for :func:`find_records`; ``None`` means any. Time is ``since <= t < until``."""

    since: float | None = None
    until: float | None = None
    actor: str | None = None
    action: str | None = None
    outcome: Outcome | None = None
    target: str | None = None

    def matches(self, entry: AuditEntry) -> bool:
        """True if ``entry`` passes every filter."""
        r = entry.record
        return (
            (self.since is None or r.time >= self.since)
            and (self.until is None or r.time < self.until)
            and (self.actor is None or r.actor == self.actor)
            and (self.action is None or r.action == self.action)
            and (self.outcome is None or r.outcome == self.outcome)
            and (self.target is None or r.target == self.target)
        )


@dataclass(frozen=True, slots=True)
class AuditPage:
    """Matching entries, oldest first, and the cursor to continue (None at the end)."""

    entries: list[AuditEntry]
    next_after: str | None


class _Scan:
    """The paging state shared by the sync and asyncio finders."""

    def __init__(self, query: AuditQuery, after: str | None, limit: int, scan_limit: int) -> None:
        if limit < 1 or scan_limit < 1:
            raise AuditError("limit and scan_limit must be positive", reason="bad_query")
        self.query, self.cursor, self.limit = query, after, limit
        self.budget = scan_limit  # entries we may still read: bounds the work of one call
        self.found: list[AuditEntry] = []

    def count(self) -> int:
        return min(PAGE, self.budget)

    def feed(self, page: Sequence[RawEntry]) -> AuditPage | None:
        """The finished page, or None to read on."""
        asked = self.count()
        for raw in page:
            entry = _parse(raw)
            self.cursor, self.budget = entry.stream_id, self.budget - 1
            if self.query.matches(entry):
                self.found.append(entry)
                if len(self.found) == self.limit:
                    return AuditPage(self.found, self.cursor)
        if len(page) < asked:
            return AuditPage(self.found, None)  # reached the end of the stream
        if self.budget == 0:
            return AuditPage(self.found, self.cursor)
        return None


def find_records(
    client: redis.Redis,
    query: AuditQuery | None = None,
    *,
    stream: str = DEFAULT_STREAM,
    after: str | None = None,
    limit: int = 50,
    scan_limit: int = 10_000,
) -> AuditPage:
    """Up to ``limit`` entries after stream id ``after`` that match ``query``.

    At most ``scan_limit`` entries are read per call, so a selective filter over a long
    log returns a short (even empty) page with a cursor rather than scanning it all.
    """
    scan = _Scan(query or AuditQuery(), after, limit, scan_limit)
    while True:
        page = client.xrange(stream, min=_lower(scan.cursor), count=scan.count()) or []
        if (done := scan.feed(page)) is not None:
            return done


async def afind_records(
    client: redis.asyncio.Redis,
    query: AuditQuery | None = None,
    *,
    stream: str = DEFAULT_STREAM,
    after: str | None = None,
    limit: int = 50,
    scan_limit: int = 10_000,
) -> AuditPage:
    """Asyncio twin of :func:`find_records`."""
    scan = _Scan(query or AuditQuery(), after, limit, scan_limit)
    while True:
        page = await client.xrange(stream, min=_lower(scan.cursor), count=scan.count()) or []
        if (done := scan.feed(page)) is not None:
            return done


async def afind_newest(
    client: redis.asyncio.Redis,
    query: AuditQuery | None = None,
    *,
    stream: str = DEFAULT_STREAM,
    before: str | None = None,
    limit: int = 50,
    scan_limit: int = 10_000,
) -> AuditPage:
    """Up to ``limit`` matching entries before stream id ``before``, newest first (for the
    console); ``next_after`` is the cursor to pass as ``before`` for older ones. Reads at
    most ``scan_limit`` entries, like :func:`find_records`."""
    scan = _Scan(query or AuditQuery(), before, limit, scan_limit)
    while True:
        upper = "+" if scan.cursor is None else f"({scan.cursor}"
        page = await client.xrevrange(stream, max=upper, count=scan.count()) or []
        if (done := scan.feed(page)) is not None:
            return done


def iter_records(
    client: redis.Redis,
    *,
    stream: str = DEFAULT_STREAM,
    start: str | None = None,
    count: int = PAGE,
) -> Iterator[AuditEntry]:
    """Every entry from stream id ``start`` (inclusive; default: the first), oldest first.

    Reads ``count`` entries per round trip; for ``taskgate audit export`` (JSON lines).
    """
    lower = start or "-"
    while page := client.xrange(stream, min=lower, count=count):
        for raw in page:
            yield _parse(raw)
        lower = _lower(entry_fields(page[-1])[0])


async def aiter_records(
    client: redis.asyncio.Redis,
    *,
    stream: str = DEFAULT_STREAM,
    start: str | None = None,
    count: int = PAGE,
) -> AsyncIterator[AuditEntry]:
    """Asyncio twin of :func:`iter_records`."""
    lower = start or "-"
    while page := await client.xrange(stream, min=lower, count=count):
        for raw in page:
            yield _parse(raw)
        lower = _lower(entry_fields(page[-1])[0])


def tail(client: redis.Redis, n: int = 20, *, stream: str = DEFAULT_STREAM) -> list[AuditEntry]:
    """The last ``n`` entries, oldest first (``taskgate audit tail``)."""
    page = client.xrevrange(stream, count=n) or []
    return [_parse(raw) for raw in reversed(page)]


async def atail(
    client: redis.asyncio.Redis, n: int = 20, *, stream: str = DEFAULT_STREAM
) -> list[AuditEntry]:
    """Asyncio twin of :func:`tail`."""
    page = await client.xrevrange(stream, count=n) or []
    return [_parse(raw) for raw in reversed(page)]


def unavailable(exc: redis.RedisError) -> AuditError:
    """The error for an audit log Redis could not read (the cause's type only)."""
    return AuditError(f"audit log unreadable ({type(exc).__name__})", reason="unavailable")
