"""The audit log against a real TLS Redis: concurrent writers, tampering, checkpoints, reads."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import re
from collections import Counter
from typing import Any

import pytest
import redis
import redis.asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from security.audit import (
    GENESIS,
    AsyncAuditWriter,
    AuditRecord,
    AuditWriter,
    BadRecord,
    Earlier,
    Write,
    amake_checkpoint,
    averify,
    iter_records,
    make_checkpoint,
    verify,
    verify_checkpoint,
    verify_or_raise,
)
from security.audit.chain import Head, chain_records
from security.audit.writes import LEASE_LOST, held, pack_record_writes
from security.errors import AuditChainBrokenError, AuditError
from security.keys import KeySet, Purpose, SigningKey, SymmetricKey
from security.tls import RedisTLS
from tests.support.replies import as_bytes, as_text, stream_range

pytestmark = pytest.mark.integration

STREAM = "tg:audit"
HEAD_KEY = "tg:audit:head"
SECRET = os.urandom(32)
KEY = SymmetricKey("audit-1", Purpose.AUDIT_GATEWAY, SECRET)
KEYS = KeySet(Purpose.AUDIT_GATEWAY, [KEY])
_PRIVATE = Ed25519PrivateKey.generate()
SIGNER = SigningKey("signing-1", _PRIVATE.public_key(), _PRIVATE)
VERIFIERS = KeySet(Purpose.SIGNING, [SigningKey("signing-1", _PRIVATE.public_key())])

Raw = list[tuple[str, dict[str, str]]]


def _rec(i: int = 0, **overrides: Any) -> AuditRecord:
    fields: dict[str, Any] = {
        "actor": "client:42",
        "action": "task.submit",
        "outcome": "allowed",
        "target": f"task-{i}",
        "request_id": f"req-{i}",
        "now": 1_000.0 + i,
    }
    return AuditRecord.make(**(fields | overrides))


def _fill(client: redis.Redis, n: int) -> AuditWriter:
    writer = AuditWriter(client, KEYS)
    writer.append_many(_rec(i) for i in range(n))
    return writer


def _raw(client: redis.Redis, stream: str = STREAM) -> Raw:
    return [
        (as_text(sid), {as_text(k): as_text(v) for k, v in (fields or {}).items()})
        for sid, fields in stream_range(client, stream)
    ]


def _rewrite(client: redis.Redis, entries: Raw, stream: str = STREAM) -> None:
    """What an attacker with Redis write access (no key) can do: rebuild the stream by hand."""
    client.delete(stream)
    for sid, fields in entries:
        client.xadd(stream, fields, id=sid)  # type: ignore[arg-type]


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


def test_new_writer_learns_the_head_of_an_existing_log(redis_client: redis.Redis) -> None:
    """A fresh writer assumes an empty log, learns the head from the conflict and goes on."""
    _fill(redis_client, 3)
    entry = AuditWriter(redis_client, KEYS).append(_rec(9))
    assert entry.seq == 4
    assert verify(redis_client, KEYS).count == 4


def test_interleaved_writers_never_fork(redis_client: redis.Redis) -> None:
    """Two writers with stale views of the head keep one unbroken chain."""
    a, b = AuditWriter(redis_client, KEYS), AuditWriter(redis_client, KEYS)
    for i in range(10):
        (a if i % 3 else b).append(_rec(i))
    report = verify(redis_client, KEYS)
    assert report.ok
    assert report.count == 10


def test_missing_head_over_existing_entries_refuses_to_write(redis_client: redis.Redis) -> None:
    """Deleting the head key stops appends (head_missing) rather than starting a new chain."""
    _fill(redis_client, 2)
    redis_client.delete(HEAD_KEY)
    with pytest.raises(AuditError) as info:
        AuditWriter(redis_client, KEYS).append(_rec())
    assert info.value.reason == "head_missing"
    assert redis_client.xlen(STREAM) == 2


def test_malformed_head_refuses_to_write(redis_client: redis.Redis) -> None:
    """A head key that does not parse stops appends (bad_head)."""
    redis_client.set(HEAD_KEY, "garbage")
    with pytest.raises(AuditError) as info:
        AuditWriter(redis_client, KEYS).append(_rec())
    assert info.value.reason == "bad_head"


def test_stream_key_of_another_type_is_write_failed(redis_client: redis.Redis) -> None:
    """Redis refusing the XADD (a string where the stream should be) is write_failed."""
    writer = _fill(redis_client, 1)
    redis_client.delete(STREAM)
    redis_client.set(STREAM, "not a stream")
    with pytest.raises(AuditError) as info:
        writer.append(_rec())
    assert info.value.reason == "write_failed"


def test_key_rotation_and_retirement_keep_history_verifiable(redis_client: redis.Redis) -> None:
    """New entries use the newest live key; retired keys still verify older entries."""
    _fill(redis_client, 2)
    new = SymmetricKey("audit-2", Purpose.AUDIT_GATEWAY, os.urandom(32))
    rotated = KeySet(Purpose.AUDIT_GATEWAY, [KEY, new])
    assert AuditWriter(redis_client, rotated).append(_rec()).kid == "audit-2"
    retired = KeySet(
        Purpose.AUDIT_GATEWAY, [SymmetricKey("audit-1", Purpose.AUDIT_GATEWAY, SECRET, True), new]
    )
    assert verify(redis_client, retired).count == 3
    only_new = KeySet(Purpose.AUDIT_GATEWAY, [new])
    assert verify(redis_client, only_new).first_bad == BadRecord(
        0, _raw(redis_client)[0][0], "unknown_kid"
    )


def _append_from_process(tls: RedisTLS, secret: bytes, name: str, barrier: Any) -> None:
    keys = KeySet(Purpose.AUDIT_GATEWAY, [SymmetricKey("audit-1", Purpose.AUDIT_GATEWAY, secret)])
    client = tls.client()
    writer = AuditWriter(client, keys)
    client.ping()  # connect (TLS handshake) before the start line, not after it
    barrier.wait(timeout=60)  # start together so the appends really contend
    for i in range(80):
        writer.append(_rec(i, actor=f"worker:{name}"))
    for start in range(80, 100, 5):
        writer.append_many(_rec(i, actor=f"worker:{name}") for i in range(start, start + 5))
    client.close()


def test_parallel_processes_keep_one_chain(redis_client: redis.Redis, tls_redis: Any) -> None:
    """Four OS processes appending 100 records each at once leave 400 chained, no gap."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [
        ctx.Process(target=_append_from_process, args=(tls_redis.tls, SECRET, f"h{n}", barrier))
        for n in range(4)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    assert [proc.exitcode for proc in procs] == [0, 0, 0, 0]
    report = verify(redis_client, KEYS, page_size=64)
    assert report.ok, report.first_bad
    assert report.count == 400
    entries = list(iter_records(redis_client))
    assert [e.seq for e in entries] == list(range(1, 401))
    assert Counter(e.record.actor for e in entries) == {f"worker:h{n}": 100 for n in range(4)}


async def test_concurrent_asyncio_writers_keep_one_chain(
    async_redis: redis.asyncio.Redis,
) -> None:
    """Many coroutines over several asyncio writers (and one shared writer) never fork."""
    writers = [AsyncAuditWriter(async_redis, KEYS) for _ in range(4)]
    shared = writers[0]

    async def run(writer: AsyncAuditWriter, name: str) -> None:
        for i in range(20):
            await writer.append(_rec(i, actor=name))
        await writer.append_many([_rec(i, actor=name) for i in range(5)])

    await asyncio.gather(
        *(run(w, f"writer:{n}") for n, w in enumerate(writers)),
        *(shared.append(_rec(i, actor="shared")) for i in range(20)),
    )
    report = await averify(async_redis, KEYS, page_size=33)
    assert report.ok, report.first_bad
    assert report.count == 4 * 25 + 20


# --- tampering ---------------------------------------------------------------------------


def test_deleted_middle_record_is_caught(redis_client: redis.Redis) -> None:
    """XDEL of a middle entry is a seq gap at the entry after it."""
    _fill(redis_client, 6)
    raw = _raw(redis_client)
    redis_client.xdel(STREAM, raw[2][0])
    report = verify(redis_client, KEYS, page_size=2)
    assert report.first_bad == BadRecord(2, raw[3][0], "seq_gap")
    assert report.count == 2


def test_edited_record_is_caught(redis_client: redis.Redis) -> None:
    """Rewriting the stream with one field changed (same ids) breaks that entry's MAC."""
    _fill(redis_client, 5)
    raw = _raw(redis_client)
    raw[3][1]["outcome"] = "denied"
    _rewrite(redis_client, raw)
    assert verify(redis_client, KEYS).first_bad == BadRecord(3, raw[3][0], "bad_mac")


def test_forged_record_with_a_wrong_key_is_caught(redis_client: redis.Redis) -> None:
    """An entry appended by hand, MACed with a guessed key, head moved too: bad_mac."""
    _fill(redis_client, 3)
    last = _raw(redis_client)[-1][1]
    guess = SymmetricKey("audit-1", Purpose.AUDIT_GATEWAY, os.urandom(32))
    (forged,) = chain_records(Head(3, last["mac"]), [_rec(9, actor="admin")], guess)
    sid = redis_client.xadd(STREAM, forged.to_fields())  # type: ignore[arg-type]
    redis_client.set(HEAD_KEY, f"4 {forged.mac}")
    assert verify(redis_client, KEYS).first_bad == BadRecord(3, as_text(sid), "bad_mac")


def test_reordered_records_are_caught(redis_client: redis.Redis) -> None:
    """Swapping two entries' contents (ids kept in order) is caught where order breaks."""
    _fill(redis_client, 5)
    raw = _raw(redis_client)
    (a, fa), (b, fb) = raw[1], raw[2]
    raw[1], raw[2] = (a, fb), (b, fa)
    _rewrite(redis_client, raw)
    assert verify(redis_client, KEYS).first_bad == BadRecord(1, a, "seq_gap")


def test_payload_field_smuggled_into_a_record_is_caught(redis_client: redis.Redis) -> None:
    """An extra field added to an entry by hand makes it malformed."""
    _fill(redis_client, 3)
    raw = _raw(redis_client)
    raw[0][1]["payload"] = "card=4111111111111111"
    _rewrite(redis_client, raw)
    assert verify(redis_client, KEYS).first_bad == BadRecord(0, raw[0][0], "malformed")


def test_non_utf8_bytes_in_a_record_are_caught(redis_client: redis.Redis) -> None:
    """Bytes that are not UTF-8 fail the MAC instead of crashing the verifier."""
    _fill(redis_client, 2)
    raw = _raw(redis_client)
    redis_client.delete(STREAM)
    redis_client.xadd(STREAM, {**raw[0][1], "actor": b"\xff\xfe"}, id=raw[0][0])  # type: ignore[dict-item]
    redis_client.xadd(STREAM, raw[1][1], id=raw[1][0])  # type: ignore[arg-type]
    assert verify(redis_client, KEYS).first_bad == BadRecord(0, raw[0][0], "bad_mac")


def test_head_key_disagreeing_with_the_last_record_is_caught(redis_client: redis.Redis) -> None:
    """A head rewound behind the entries, or pointing nowhere, is reported."""
    _fill(redis_client, 4)
    raw = _raw(redis_client)
    redis_client.set(HEAD_KEY, f"3 {raw[2][1]['mac']}")
    assert verify(redis_client, KEYS).first_bad == BadRecord(4, None, "head_mismatch")
    redis_client.set(HEAD_KEY, f"2 {'ab' * 32}")
    assert verify(redis_client, KEYS).first_bad == BadRecord(1, raw[1][0], "head_mismatch")
    redis_client.set(HEAD_KEY, "garbage")
    assert verify(redis_client, KEYS).first_bad == BadRecord(4, None, "bad_head")
    redis_client.delete(HEAD_KEY)
    assert verify(redis_client, KEYS).first_bad == BadRecord(4, None, "head_missing")


def test_deleted_last_record_is_caught_by_the_head(redis_client: redis.Redis) -> None:
    """XDEL of the last entry while the head still names it is truncated."""
    _fill(redis_client, 4)
    redis_client.xdel(STREAM, _raw(redis_client)[-1][0])
    assert verify(redis_client, KEYS).first_bad == BadRecord(3, None, "truncated")


def test_truncated_tail_needs_a_checkpoint(redis_client: redis.Redis) -> None:
    """Tail cut and head rewound: passes without a checkpoint (the limit), caught with one."""
    _fill(redis_client, 5)
    cp = verify_checkpoint(make_checkpoint(redis_client, SIGNER, now=2000.0), VERIFIERS)
    raw = _raw(redis_client)
    redis_client.xdel(STREAM, raw[3][0], raw[4][0])
    redis_client.set(HEAD_KEY, f"3 {raw[2][1]['mac']}")
    assert verify(redis_client, KEYS).ok  # documented limit: nothing left to contradict it
    report = verify(redis_client, KEYS, checkpoint=cp)
    assert report.first_bad == BadRecord(3, None, "truncated")


def test_chain_rebuilt_with_the_key_differs_from_the_checkpoint(
    redis_client: redis.Redis,
) -> None:
    """A log wiped and rebuilt (even by a key holder) no longer matches a checkpoint."""
    _fill(redis_client, 3)
    cp = verify_checkpoint(make_checkpoint(redis_client, SIGNER, now=2000.0), VERIFIERS)
    redis_client.delete(STREAM, HEAD_KEY)
    AuditWriter(redis_client, KEYS).append_many(_rec(i, outcome="denied") for i in range(4))
    report = verify(redis_client, KEYS, checkpoint=cp)
    assert report.first_bad is not None
    assert (report.first_bad.index, report.first_bad.reason) == (2, "checkpoint_mismatch")


def test_checkpoint_of_another_stream_is_refused(redis_client: redis.Redis) -> None:
    """Verifying with a checkpoint made for another stream is an AuditError, not a report."""
    cp = verify_checkpoint(make_checkpoint(redis_client, SIGNER, stream="tg:other"), VERIFIERS)
    with pytest.raises(AuditError) as info:
        verify(redis_client, KEYS, checkpoint=cp)
    assert info.value.reason == "bad_checkpoint"


def test_verify_or_raise(redis_client: redis.Redis) -> None:
    """verify_or_raise returns an ok report and raises AuditChainBrokenError otherwise."""
    _fill(redis_client, 3)
    assert verify_or_raise(redis_client, KEYS).count == 3
    raw = _raw(redis_client)
    redis_client.xdel(STREAM, raw[1][0])
    with pytest.raises(AuditChainBrokenError) as info:
        verify_or_raise(redis_client, KEYS)
    assert (info.value.index, info.value.record_id, info.value.reason) == (1, raw[2][0], "seq_gap")


async def test_async_verify_catches_tampering(async_redis: redis.asyncio.Redis) -> None:
    """averify reports the first bad entry just like verify."""
    writer = AsyncAuditWriter(async_redis, KEYS)
    await writer.append_many([_rec(i) for i in range(4)])
    ids = [as_bytes(sid) for sid, _ in await async_redis.xrange(STREAM) or []]
    await async_redis.xdel(STREAM, ids[1])
    report = await averify(async_redis, KEYS, page_size=1)
    assert report.first_bad == BadRecord(1, ids[2].decode(), "seq_gap")


class _Broken:
    """A client whose every call fails like a dropped connection."""

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise redis.ConnectionError("Connection closed by server.")

        return fail


class _AsyncBroken:
    def __getattr__(self, name: str) -> Any:
        async def fail(*args: Any, **kwargs: Any) -> Any:
            raise redis.ConnectionError("Connection closed by server.")

        return fail


async def test_unreadable_redis_is_an_audit_error() -> None:
    """Verifying or checkpointing without Redis raises AuditError(unavailable)."""
    for call in (
        lambda: verify(_Broken(), KEYS),  # type: ignore[arg-type]
        lambda: make_checkpoint(_Broken(), SIGNER),  # type: ignore[arg-type]
    ):
        with pytest.raises(AuditError) as info:
            call()
        assert info.value.reason == "unavailable"
    for coro in (
        averify(_AsyncBroken(), KEYS),  # type: ignore[arg-type]
        amake_checkpoint(_AsyncBroken(), SIGNER),  # type: ignore[arg-type]
    ):
        with pytest.raises(AuditError) as info:
            await coro
        assert info.value.reason == "unavailable"


# --- checkpoints -------------------------------------------------------------------------


def test_checkpoint_of_an_empty_log(redis_client: redis.Redis) -> None:
    """An empty log checkpoints at seq 0 / genesis, and a later log still matches it."""
    cp = make_checkpoint(redis_client, SIGNER, now=5.0)
    assert (cp["seq"], cp["mac"], cp["stream"], cp["time"]) == (0, GENESIS, STREAM, 5.0)
    checked = verify_checkpoint(json.dumps(cp), VERIFIERS)
    _fill(redis_client, 2)
    assert verify(redis_client, KEYS, checkpoint=checked).ok


def test_checkpoint_pins_the_current_head(redis_client: redis.Redis) -> None:
    """A checkpoint names the current head and still matches after more appends."""
    writer = _fill(redis_client, 3)
    cp = make_checkpoint(redis_client, SIGNER, now=10.0)
    assert cp["seq"] == 3
    assert cp["mac"] == _raw(redis_client)[-1][1]["mac"]
    writer.append(_rec(4))
    assert verify(redis_client, KEYS, checkpoint=verify_checkpoint(cp, VERIFIERS)).ok


def test_checkpoint_with_keys_signs_only_a_verified_chain(redis_client: redis.Redis) -> None:
    """Given the audit keys, make_checkpoint verifies first and refuses a broken chain."""
    _fill(redis_client, 3)
    cp = make_checkpoint(redis_client, SIGNER, keys=KEYS)
    assert cp["seq"] == 3
    redis_client.xdel(STREAM, _raw(redis_client)[0][0])
    with pytest.raises(AuditChainBrokenError):
        make_checkpoint(redis_client, SIGNER, keys=KEYS)


def test_checkpoint_refuses_a_missing_head(redis_client: redis.Redis) -> None:
    """Entries without a head key cannot be checkpointed (head_missing)."""
    _fill(redis_client, 1)
    redis_client.delete(HEAD_KEY)
    with pytest.raises(AuditError) as info:
        make_checkpoint(redis_client, SIGNER)
    assert info.value.reason == "head_missing"


async def test_async_checkpoints(async_redis: redis.asyncio.Redis) -> None:
    """amake_checkpoint mirrors make_checkpoint, with and without verification."""
    empty = await amake_checkpoint(async_redis, SIGNER, now=1.0)
    assert (empty["seq"], empty["mac"]) == (0, GENESIS)
    await AsyncAuditWriter(async_redis, KEYS).append_many([_rec(i) for i in range(3)])
    cp = await amake_checkpoint(async_redis, SIGNER, keys=KEYS, now=2.0)
    plain = await amake_checkpoint(async_redis, SIGNER, now=2.0)
    assert cp == plain
    assert verify_checkpoint(cp, VERIFIERS).head.seq == 3
    checked = verify_checkpoint(cp, VERIFIERS)
    assert (await averify(async_redis, KEYS, checkpoint=checked)).ok
