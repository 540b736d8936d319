"""The gateway's audit jobs: refusal grouping and summaries, anchoring, the verify limiter."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import redis.asyncio

from gateway.anchoring import AnchorJob, VerifyLimiter
from gateway.http.middleware import request_scope_var
from gateway.refusals import RefusalAggregator, group_actor, is_aggregated
from gateway.submission.audit_batcher import AuditBatcher
from security.audit import AsyncAuditWriter, AuditRecord, aiter_records
from security.audit.anchor import read_anchors
from security.audit.refusals import RefusalCounter
from security.keystore import KeyRing
from tests.support.audit import entry_stream_id

# Refusal counters of their own: a gateway of the test session (integration tests run
# first) claims every closed window under the default stream's prefix.
OWN_STREAM = "tg:unit-refusals"


def test_only_unauthenticated_or_rate_limited_refusals_are_aggregated() -> None:
    """Bad tokens, 429s and bad client credentials aggregate; every other decision is one record."""
    assert is_aggregated("auth.refused", "denied", "expired")
    assert is_aggregated("rate_limit.hit", "denied", "ip limit")
    assert is_aggregated("token.issue", "denied", "invalid_client")
    assert is_aggregated("token.issue", "denied", "malformed_client_id")
    assert not is_aggregated("token.issue", "denied", "invalid_scope")
    assert not is_aggregated("task.submit", "denied", "validation")
    assert not is_aggregated("task.submit", "allowed", "")
    assert not is_aggregated("auth.refused", "ok", "")


def test_group_actor_keeps_only_well_formed_client_ids() -> None:
    """A claimed id joins the group only if well formed; the source comes from the scope."""
    scope = {"type": "http", "client": ("192.0.2.7", 1234), "headers": []}
    token = request_scope_var.set(scope)
    try:
        assert group_actor("anonymous") == "ip:192.0.2.7"
        assert group_actor("client:demo-0123abcd") == "client:demo-0123abcd ip:192.0.2.7"
        assert group_actor("client:made up\x00id") == "ip:192.0.2.7"
        assert group_actor("admin") == "admin ip:192.0.2.7"
    finally:
        request_scope_var.reset(token)
    assert group_actor("ip:198.51.100.1") == "ip:198.51.100.1"  # outside a request
    assert group_actor("anonymous") == "anonymous"


@pytest.mark.integration
async def test_a_flood_is_one_first_record_and_one_summary(
    async_redis: redis.asyncio.Redis, keyring: KeyRing
) -> None:
    """500 refusals from one source: one record at once, one summary with count 500 later."""
    now = [120.0]
    writer = AsyncAuditWriter(async_redis, keyring.audit)
    batcher = AuditBatcher(writer)
    counter = RefusalCounter(async_redis, stream=OWN_STREAM, window=60)
    agg = RefusalAggregator(counter, batcher, writer, clock=lambda: now[0])
    for i in range(500):
        await agg.refuse(
            AuditRecord.make(
                actor="ip:10.1.1.1",
                action="auth.refused",
                outcome="denied",
                target="demo",
                reason="expired",
                now=120.0 + i / 10,
            )
        )
    assert await agg.flush() == 0  # the window is still open
    now[0] = 190.0
    assert await agg.flush() == 1
    records = [e.record async for e in aiter_records(async_redis)]
    assert len(records) == 2
    assert records[0].reason == "expired"
    assert records[1].reason.startswith("summary count=500 ")
    assert await async_redis.exists(*counter.keys(2)) == 0  # counters gone with the summary
    await batcher.stop()


@pytest.mark.integration
async def test_anchor_job_anchors_a_verified_head_when_due(
    async_redis: redis.asyncio.Redis, keyring: KeyRing, tmp_path: Path
) -> None:
    """The head is anchored once, again only after `every` records, never over a broken chain."""
    path = tmp_path / "checkpoints.jsonl"
    writer = AsyncAuditWriter(async_redis, keyring.audit)
    job = AnchorJob(async_redis, keyring, path, interval=3600, every=3, clock=lambda: 1000.0)
    assert await job.run_once() is None  # empty log: nothing to anchor

    async def add(n: int) -> None:
        await writer.append_many(
            AuditRecord.make(actor="admin", action="t", outcome="ok") for _ in range(n)
        )

    await add(2)
    first = await job.run_once()
    assert first is not None
    assert first.checkpoint.seq == 2
    await add(2)
    assert await job.run_once() is None  # 2 < every and not yet interval
    await add(1)
    second = await job.run_once()
    assert second is not None
    assert second.checkpoint.seq == 5
    assert [a.checkpoint.seq for a in read_anchors(path, keyring.signing)] == [2, 5]

    await add(3)
    entries = [e async for e in aiter_records(async_redis)]
    await async_redis.xdel("tg:audit", entry_stream_id(entries[5]))  # break the chain after seq 5
    assert await job.run_once() is None
    assert len(read_anchors(path, keyring.signing)) == 2


@pytest.mark.integration
async def test_verify_limiter_counts_per_caller(async_redis: redis.asyncio.Redis) -> None:
    """Each caller has its own window; past the amount the answer is no, with a reset."""
    limiter = VerifyLimiter(async_redis, "2/minute")
    results = [await limiter.allow("admin", now=60.0) for _ in range(3)]
    assert [ok for ok, _ in results] == [True, True, False]
    assert results[-1][1] == 60
    assert (await limiter.allow("client:other-0123abcd", now=60.0))[0] is True
    assert (await limiter.allow("admin", now=120.0))[0] is True  # next window


@pytest.mark.integration
async def test_anchor_job_stops_and_says_so_when_the_head_falls_behind(
    async_redis: redis.asyncio.Redis,
    keyring: KeyRing,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After a wipe the new head is behind the newest anchor: no anchor, one error logged."""
    path = tmp_path / "checkpoints.jsonl"
    job = AnchorJob(async_redis, keyring, path, interval=0.0, every=1, clock=lambda: 1000.0)
    writer = AsyncAuditWriter(async_redis, keyring.audit)
    await writer.append_many(
        AuditRecord.make(actor="admin", action="t", outcome="ok") for _ in range(5)
    )
    assert await job.run_once() is not None
    await async_redis.flushdb()
    fresh = AsyncAuditWriter(async_redis, keyring.audit)
    await fresh.append(AuditRecord.make(actor="admin", action="t", outcome="ok"))
    with caplog.at_level("ERROR", logger="taskgate.audit"):
        assert await job.run_once() is None
        assert await job.run_once() is None
    assert [r.getMessage() for r in caplog.records].count(
        "audit head seq 1 is behind the newest anchor (seq 5): the log was cut or wiped;"
        " not anchoring until an operator looks (docs/audit.md)"
    ) == 1
    assert len(read_anchors(path, keyring.signing)) == 1


@pytest.mark.integration
async def test_a_lone_refusal_needs_no_summary_and_a_claimed_window_is_skipped(
    async_redis: redis.asyncio.Redis, keyring: KeyRing
) -> None:
    """One refusal: its first record only, the counters dropped; a window another process
    holds is left to it."""
    writer = AsyncAuditWriter(async_redis, keyring.audit)
    batcher = AuditBatcher(writer)
    counter = RefusalCounter(async_redis, stream=OWN_STREAM, window=60)
    agg = RefusalAggregator(counter, batcher, writer, clock=lambda: 300.0)
    lone = AuditRecord.make(actor="anonymous", action="auth.refused", outcome="denied", now=120.0)
    await agg.refuse(lone)
    assert await agg.flush() == 0
    assert await async_redis.exists(*counter.keys(2)) == 0
    assert [e.record.actor async for e in aiter_records(async_redis)] == ["anonymous"]
    await agg.refuse(dataclasses.replace(lone, time=180.0))
    await agg.refuse(dataclasses.replace(lone, time=181.0))
    assert await counter.claim(3, "someone else") is not None
    assert await agg.flush() == 0  # window 3 is someone else's
    await batcher.stop()
