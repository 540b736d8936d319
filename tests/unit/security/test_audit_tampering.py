"""The audit log against a real TLS Redis: tampering is caught, checkpoints pin the head.

Deleted, edited, forged, reordered or smuggled records, a disagreeing or deleted head, a
truncated tail against a checkpoint, an unreadable Redis, and the checkpoints themselves.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import redis
import redis.asyncio

from security.audit import (
    GENESIS,
    AsyncAuditWriter,
    AuditWriter,
    BadRecord,
    amake_checkpoint,
    averify,
    make_checkpoint,
    verify,
    verify_checkpoint,
    verify_or_raise,
)
from security.audit.chain import Head, chain_records
from security.errors import AuditChainBrokenError, AuditError
from security.keys import Purpose, SymmetricKey
from tests.support.audit_chain import HEAD_KEY, KEYS, SIGNER, STREAM, VERIFIERS
from tests.support.audit_chain import audit_record as _rec
from tests.support.audit_chain import fill_log as _fill
from tests.support.audit_chain import raw_entries as _raw
from tests.support.audit_chain import rewrite_stream as _rewrite
from tests.support.replies import as_bytes, as_text

pytestmark = pytest.mark.integration


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
