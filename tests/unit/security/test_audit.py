"""The audit log against a real TLS Redis: appending records and their attached writes.

One round trip per append, attached writes that land with their record or not at all,
preconditions, earlier-argument references and the async writer.
"""

from __future__ import annotations

import re

import pytest
import redis
import redis.asyncio

from security.audit import GENESIS, AsyncAuditWriter, AuditWriter, Earlier, Write, verify
from security.audit.writes import LEASE_LOST, held, pack_record_writes
from security.errors import AuditError
from tests.support.audit_chain import HEAD_KEY, KEYS, STREAM
from tests.support.audit_chain import audit_record as _rec
from tests.support.audit_chain import fill_log as _fill
from tests.support.audit_chain import raw_entries as _raw

pytestmark = pytest.mark.integration


def _evalsha_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


# --- writing -----------------------------------------------------------------------------


def test_append_then_verify(redis_client: redis.Redis) -> None:
    """Appended records are chained in the stream and the chain verifies."""
    writer = AuditWriter(redis_client, KEYS)
    first = writer.append(_rec(1, reason="ok\r\nforged"))
    second = writer.append(_rec(2))
    assert (first.seq, first.prev, second.seq, second.prev) == (1, GENESIS, 2, first.mac)
    assert first.record.reason == "ok\ufffd\ufffdforged"
    assert redis_client.get(HEAD_KEY) == f"2 {second.mac}".encode()
    raw = _raw(redis_client)
    assert [sid for sid, _ in raw] == [first.stream_id, second.stream_id]
    assert raw[0][1]["reason"] == "ok\ufffd\ufffdforged"
    report = verify(redis_client, KEYS)
    assert report.ok
    assert (report.count, report.head_seq, report.head_mac) == (2, 2, second.mac)


def test_steady_state_append_is_one_round_trip(redis_client: redis.Redis) -> None:
    """A writer that knows the head appends with one EVALSHA; a batch too."""
    writer = _fill(redis_client, 1)
    before = _evalsha_calls(redis_client)
    for i in range(5):
        writer.append(_rec(i))
    writer.append_many([_rec(i) for i in range(50)])
    assert _evalsha_calls(redis_client) - before == 6
    assert verify(redis_client, KEYS).count == 56


def test_attached_writes_land_with_their_record_in_one_call(redis_client: redis.Redis) -> None:
    """A record's attached writes run in the same script call, in order, after the append."""
    writer = _fill(redis_client, 1)
    before = _evalsha_calls(redis_client)
    done = writer.commit_many(
        [
            (_rec(1), [Write("SET", ("k1",), ("v1", "EX", "60")), Write("RPUSH", ("q",), ("a",))]),
            (_rec(2), []),
            (_rec(3), [Write("RPUSH", ("q",), ("b", b"\x00bytes"))]),
        ]
    )
    assert _evalsha_calls(redis_client) - before == 1
    assert [d.write_error for d in done] == [None, None, None]
    assert [d.entry.seq for d in done] == [2, 3, 4]
    assert redis_client.get("k1") == b"v1"
    assert 0 < redis_client.ttl("k1") <= 60
    assert redis_client.lrange("q", 0, -1) == [b"a", b"b", b"\x00bytes"]
    assert verify(redis_client, KEYS).count == 4


def test_a_refused_write_stops_its_record_only_and_comes_back(redis_client: redis.Redis) -> None:
    """Redis refusing one write skips that record's later writes; the others all run."""
    redis_client.set("not-a-list", "x")
    writer = AuditWriter(redis_client, KEYS)
    done = writer.commit_many(
        [
            (_rec(1), [Write("RPUSH", ("not-a-list",), ("a",)), Write("SET", ("after",), ("1",))]),
            (_rec(2), [Write("SET", ("other",), ("1",))]),
        ]
    )
    assert done[0].write_error is not None
    assert "WRONGTYPE" in done[0].write_error
    assert done[1].write_error is None
    assert redis_client.exists("after") == 0
    assert redis_client.get("other") == b"1"
    assert verify(redis_client, KEYS).count == 2  # the refusal's record stands, chain intact


def test_a_held_precondition_gates_its_records_writes(redis_client: redis.Redis) -> None:
    """``held(key, value)`` lets a record's writes run while the key holds the value or
    nothing; another value skips them all (outcome 'lease lost'), other records unaffected."""
    redis_client.set("lease:mine", "me")
    redis_client.set("lease:taken", "someone else")
    writer = AuditWriter(redis_client, KEYS)
    done = writer.commit_many(
        [
            (_rec(1), [held("lease:mine", "me"), Write("SET", ("a",), ("1",))]),
            (_rec(2), [held("lease:lapsed", "me"), Write("SET", ("b",), ("1",))]),
            (_rec(3), [held("lease:taken", "me"), Write("SET", ("c",), ("1",))]),
            (_rec(4), [Write("SET", ("d",), ("1",))]),
        ]
    )
    assert [d.write_error for d in done] == [None, None, LEASE_LOST, None]
    assert [redis_client.get(k) for k in ("a", "b", "c", "d")] == [b"1", b"1", None, b"1"]
    assert redis_client.get("lease:taken") == b"someone else"
    assert redis_client.exists("lease:lapsed") == 0  # a precondition writes nothing itself
    assert verify(redis_client, KEYS).count == 4  # every record stands, chain intact


def test_attached_writes_run_once_when_the_append_first_conflicts(
    redis_client: redis.Redis,
) -> None:
    """A conflicting attempt writes nothing: the retry's writes are the only ones applied."""
    stale = AuditWriter(redis_client, KEYS)
    stale.append(_rec(0))
    AuditWriter(redis_client, KEYS).append_many([_rec(1), _rec(2)])  # moves the head on
    done = stale.commit_many([(_rec(3), [Write("INCR", ("counter",))])])
    assert done[0].entry.seq == 4
    assert redis_client.get("counter") == b"1"
    assert verify(redis_client, KEYS).ok


def test_attached_write_score_written_with_repr_keeps_its_precision(
    redis_client: redis.Redis,
) -> None:
    """Arguments are text: a float formatted with ``repr`` arrives exact."""
    score = 1732445123.123456
    AuditWriter(redis_client, KEYS).commit_many(
        [(_rec(1), [Write("ZADD", ("z",), (repr(score), "m"))])]
    )
    assert redis_client.zscore("z", "m") == score


def test_attached_write_bytes_travel_unchanged(redis_client: redis.Redis) -> None:
    """Binary arguments (sealed blobs) reach Redis byte for byte."""
    blob = bytes(range(256))
    AuditWriter(redis_client, KEYS).commit_many([(_rec(1), [Write("SET", ("k",), (blob,))])])
    assert redis_client.get("k") == blob


def test_attached_writes_must_be_write_instances(redis_client: redis.Redis) -> None:
    """Anything but a Write is refused before Redis is touched."""
    writer = AuditWriter(redis_client, KEYS)
    with pytest.raises(AuditError) as info:
        writer.commit_many([(_rec(1), [("SET", "k", "v")])])  # type: ignore[list-item]
    assert info.value.reason == "bad_record"
    assert redis_client.exists(STREAM) == 0


def test_an_earlier_argument_repeats_a_value_sent_once(redis_client: redis.Redis) -> None:
    """A write may repeat an earlier write's argument of the same record: the value is
    packed once and lands wherever it is named, byte for byte; records do not share."""
    blob = bytes(range(256)) * 8
    writer = AuditWriter(redis_client, KEYS)
    writes = [
        Write("SET", ("copy",), (blob, "EX", "60"), name="copy"),
        Write("HSET", ("h",), ("field", "x"), name="hash"),
        Write("LPUSH", ("queue",), (Earlier("copy"),)),
        Write("HSET", ("h2",), ("f", Earlier("hash", 1))),
    ]
    other = [
        Write("SET", ("copy2",), (b"other",), name="copy"),
        Write("LPUSH", ("queue",), (Earlier("copy"),)),
    ]
    done = writer.commit_many([(_rec(1), writes), (_rec(2), other)])
    assert [d.write_error for d in done] == [None, None]
    assert redis_client.get("copy") == blob
    assert redis_client.lrange("queue", 0, -1) == [b"other", blob]
    assert redis_client.hget("h2", "f") == b"x"
    assert redis_client.ttl("copy") > 0


@pytest.mark.parametrize(
    ("writes", "says"),
    [
        (
            [Write("LPUSH", ("q",), (Earlier("q"),), name="q")],
            "write 0 (LPUSH): Earlier(write='q', arg=0) names no earlier write",
        ),
        (
            [Write("LPUSH", ("q",), (Earlier("a"),)), Write("SET", ("a",), ("v",), name="a")],
            "write 0 (LPUSH): Earlier(write='a', arg=0) names no earlier write",
        ),
        (
            [Write("SET", ("a",), ("v",), name="msg"), Write("LPUSH", ("q",), (Earlier("mgs"),))],
            "write 1 (LPUSH): Earlier(write='mgs', arg=0) names no earlier write",
        ),
        (
            [Write("SET", ("a",), ("v",)), Write("LPUSH", ("q",), (Earlier(""),))],
            "names no earlier write",
        ),
        (
            [Write("SET", ("a",), ("v",), name="a"), Write("LPUSH", ("q",), (Earlier("a", 1),))],
            "write 1 (LPUSH): Earlier(write='a', arg=1): write 'a' has no argument 1",
        ),
        (
            [Write("SET", ("a",), ("v",), name="a"), Write("LPUSH", ("q",), (Earlier("a", -1),))],
            "write 'a' has no argument -1",
        ),
        (
            [Write("SET", ("a",), ("v",), name="a"), Write("SET", ("b",), ("w",), name="a")],
            "two writes of one record are named 'a'",
        ),
    ],
    ids=["itself", "a later write", "misspelt", "unnamed", "no such arg", "negative", "twice"],
)
def test_an_earlier_argument_must_name_an_earlier_writes_argument(
    redis_client: redis.Redis, writes: list[Write], says: str
) -> None:
    """A reference to itself, a later write, a misspelt or empty name, an argument the
    named write lacks, or two writes of one name: refused before Redis, saying which."""
    writer = AuditWriter(redis_client, KEYS)
    with pytest.raises(AuditError, match=re.escape(says)) as info:
        writer.commit_many([(_rec(1), writes)])
    assert info.value.reason == "bad_record"
    assert redis_client.exists(STREAM, "q", "a", "b") == 0


def test_a_reference_packs_as_the_position_of_the_named_value() -> None:
    """On the wire a name is the 1-based (write, position in [command, *keys, *args]) the
    script resolves, exactly as positional references were sent."""
    writes = [
        Write("SET", ("v1",), ("x",)),
        Write("SET", ("copy",), (b"msg", "EX", "9"), name="message"),
        Write("LPUSH", ("q",), (Earlier("message"),)),
        Write("HSET", ("h",), ("f", Earlier("message", 2))),
    ]
    assert pack_record_writes(writes) == [
        ["SET", "v1", "x"],
        ["SET", "copy", b"msg", "EX", "9"],
        ["LPUSH", "q", [2, 3]],
        ["HSET", "h", "f", [2, 5]],
    ]


def test_packing_an_unchecked_reference_to_no_write_raises() -> None:
    """Packed without the check, a reference to a name no write has still fails clearly."""
    with pytest.raises(AuditError, match="names no write of its record"):
        pack_record_writes([Write("LPUSH", ("q",), (Earlier("nowhere"),))])


async def test_async_writer_commits_attached_writes(async_redis: redis.asyncio.Redis) -> None:
    """The asyncio writer runs attached writes the same way."""
    writer = AsyncAuditWriter(async_redis, KEYS)
    done = await writer.commit_many([(_rec(1), [Write("SET", ("ak",), ("1",))])])
    assert [d.write_error for d in done] == [None]
    assert await async_redis.get("ak") == b"1"
