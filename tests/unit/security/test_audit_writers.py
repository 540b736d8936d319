"""The audit log against a real TLS Redis: one chain, whoever writes it.

A new writer picks up the head, interleaved and concurrent writers (processes, asyncio)
never fork the chain, a missing or malformed head stops writing, keys rotate.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections import Counter
from typing import Any

import pytest
import redis
import redis.asyncio

from security.audit import AsyncAuditWriter, AuditWriter, BadRecord, averify, iter_records, verify
from security.errors import AuditError
from security.keys import KeySet, Purpose, SymmetricKey
from security.tls import RedisTLS
from tests.support.audit_chain import HEAD_KEY, KEY, KEYS, SECRET, STREAM
from tests.support.audit_chain import audit_record as _rec
from tests.support.audit_chain import fill_log as _fill
from tests.support.audit_chain import raw_entries as _raw

pytestmark = pytest.mark.integration


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
