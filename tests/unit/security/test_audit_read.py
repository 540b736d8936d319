"""Reading the audit stream against a real TLS Redis: export, tail, filtered pages."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
import redis.asyncio

from security.audit import (
    AsyncAuditWriter,
    AuditQuery,
    AuditRecord,
    AuditWriter,
    afind_records,
    aiter_records,
    atail,
    find_records,
    iter_records,
    tail,
)
from security.audit import read as audit_read
from security.errors import AuditError
from security.keys import KeySet, Purpose, SymmetricKey
from tests.support.replies import as_text, stream_range

pytestmark = pytest.mark.integration

STREAM = "tg:audit"
KEYS = KeySet(Purpose.AUDIT_GATEWAY, [SymmetricKey("audit-1", Purpose.AUDIT_GATEWAY, b"k" * 32)])


def _rec(i: int = 0, **overrides: Any) -> AuditRecord:
    fields: dict[str, Any] = {
        "actor": "client:42",
        "action": "task.submit",
        "outcome": "allowed",
        "target": f"task-{i}",
        "now": 1_000.0 + i,
    }
    return AuditRecord.make(**(fields | overrides))


def _fill(client: redis.Redis, n: int) -> AuditWriter:
    writer = AuditWriter(client, KEYS)
    writer.append_many(_rec(i) for i in range(n))
    return writer


def _ids(client: redis.Redis) -> list[str]:
    return [as_text(sid) for sid, _ in stream_range(client, STREAM)]


def test_iter_records_pages_through_everything_in_order(redis_client: redis.Redis) -> None:
    """iter_records yields every entry with its id, oldest first, across pages."""
    written = _fill(redis_client, 1).append_many(_rec(i) for i in range(1, 12))
    entries = list(iter_records(redis_client, count=4))
    assert [e.seq for e in entries] == list(range(1, 13))
    assert [e.stream_id for e in entries[1:]] == [e.stream_id for e in written]
    start = entries[5].stream_id
    assert [e.seq for e in iter_records(redis_client, start=start, count=3)] == list(range(6, 13))
    lines = [json.dumps(e.to_dict()) for e in entries]
    assert json.loads(lines[0])["seq"] == 1
    assert list(iter_records(redis_client, stream="tg:none")) == []


def test_tail_returns_the_last_entries_oldest_first(redis_client: redis.Redis) -> None:
    """tail(n) gives the n newest entries in chronological order."""
    _fill(redis_client, 10)
    assert [e.seq for e in tail(redis_client, 3)] == [8, 9, 10]
    assert tail(redis_client, 3, stream="tg:none") == []


def test_reading_a_malformed_entry_raises(redis_client: redis.Redis) -> None:
    """An entry that does not parse stops a read with AuditError(malformed) naming its id."""
    sid = as_text(redis_client.xadd(STREAM, {"seq": "1", "junk": "x"}))
    with pytest.raises(AuditError) as info:
        list(iter_records(redis_client))
    assert info.value.reason == "malformed"
    assert sid in str(info.value)


def _fill_mixed(client: redis.Redis) -> None:
    records = []
    for i in range(30):
        records.append(
            _rec(
                i,
                actor="admin" if i % 3 == 0 else "client:42",
                action="token.issue" if i % 2 else "task.submit",
                outcome="denied" if i % 5 == 0 else "allowed",
            )
        )
    AuditWriter(client, KEYS).append_many(records)


def test_find_records_filters_by_time_actor_action_outcome(redis_client: redis.Redis) -> None:
    """Each filter narrows the result; time is since <= t < until."""
    _fill_mixed(redis_client)
    page = find_records(redis_client, AuditQuery(since=1005.0, until=1010.0), limit=100)
    assert [e.record.time for e in page.entries] == [1005.0, 1006.0, 1007.0, 1008.0, 1009.0]
    assert page.next_after is None
    found = find_records(redis_client, AuditQuery(actor="admin", outcome="denied")).entries
    assert [e.record.time for e in found] == [1000.0, 1015.0]
    found = find_records(redis_client, AuditQuery(actor="admin", action="task.submit")).entries
    assert [e.record.time for e in found] == [1000.0, 1006.0, 1012.0, 1018.0, 1024.0]


def test_find_records_paginates_by_stream_id(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages of ``limit`` chain through ``next_after`` until it is None, over many reads."""
    monkeypatch.setattr(audit_read, "PAGE", 4)
    _fill_mixed(redis_client)
    q = AuditQuery(actor="admin")
    seen: list[int] = []
    after = None
    for _ in range(10):
        page = find_records(redis_client, q, after=after, limit=4)
        seen += [e.seq for e in page.entries]
        after = page.next_after
        if after is None:
            break
    assert seen == list(range(1, 31, 3))


def test_find_records_bounds_the_scan(redis_client: redis.Redis) -> None:
    """A selective filter stops after scan_limit entries and returns a cursor to go on."""
    _fill_mixed(redis_client)
    page = find_records(redis_client, AuditQuery(actor="nobody"), scan_limit=7)
    assert page.entries == []
    assert page.next_after == _ids(redis_client)[6]
    rest = find_records(redis_client, AuditQuery(actor="nobody"), after=page.next_after)
    assert (rest.entries, rest.next_after) == ([], None)


def test_find_records_refuses_a_bad_limit(redis_client: redis.Redis) -> None:
    """A limit or scan limit below 1 is bad_query."""
    for kwargs in ({"limit": 0}, {"scan_limit": 0}):
        with pytest.raises(AuditError) as info:
            find_records(redis_client, **kwargs)  # type: ignore[arg-type]
        assert info.value.reason == "bad_query"


async def test_async_readers(
    async_redis: redis.asyncio.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """afind_records, aiter_records and atail mirror their sync twins."""
    monkeypatch.setattr(audit_read, "PAGE", 2)
    await AsyncAuditWriter(async_redis, KEYS).append_many(
        [_rec(i, outcome="denied" if i % 2 else "ok") for i in range(9)]
    )
    page = await afind_records(async_redis, AuditQuery(outcome="denied"), limit=3)
    assert [e.seq for e in page.entries] == [2, 4, 6]
    more = await afind_records(async_redis, AuditQuery(outcome="denied"), after=page.next_after)
    assert ([e.seq for e in more.entries], more.next_after) == ([8], None)
    assert [e.seq async for e in aiter_records(async_redis, count=2)] == list(range(1, 10))
    assert [e.seq for e in await atail(async_redis, 2)] == [8, 9]
