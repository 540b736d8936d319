"""Aggregated refusals: pure parsing and summaries, and the counters against a real TLS Redis."""

from __future__ import annotations

import pytest
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from security.audit.chain import AuditRecord
from security.audit.refusals import (
    GroupSummary,
    RefusalCounter,
    RefusalGroup,
    parse_counters,
    parse_window,
    summary_records,
)
from security.errors import AuditError, ConfigError

# Refusal counters of their own: a gateway of the test session (integration tests run
# first) claims every closed window under the default stream's prefix.
OWN_STREAM = "tg:unit-refusals"

GROUP = RefusalGroup("auth.refused", "ip:10.0.0.1", "demo.echo")


def test_parse_window_accepts_whole_seconds_and_refuses_the_rest() -> None:
    """A window is 1 s to a day in whole seconds; anything else is a ConfigError."""
    assert parse_window("60") == 60
    assert parse_window(1) == 1
    for bad in ("0", "1.5", "nan", "inf", "86401", "x", -5):
        with pytest.raises(ConfigError):
            parse_window(bad)


def test_group_encoding_is_stable_and_field_safe() -> None:
    """The same group always has the same short hex id; its description is JSON."""
    gid, desc = GROUP.encode()
    assert gid == GROUP.encode()[0]
    assert len(gid) == 16
    assert all(c in "0123456789abcdef" for c in gid)
    assert desc == '["auth.refused","ip:10.0.0.1","demo.echo"]'


def test_parse_counters_reads_groups_largest_first() -> None:
    """Counters parse into one summary per group, reasons included, largest count first."""
    a, da = GROUP.encode()
    b, db = RefusalGroup("rate_limit.hit", "ip:10.0.0.2", "/v1/token").encode()
    fields = {
        "#groups": "2",
        f"{a}|n": "3",
        f"{a}|d": da,
        f"{a}|f": "100.5",
        f"{a}|l": "101.5",
        f"{a}|rc": "2",
        f"{a}|r|expired": "2",
        f"{a}|r|bad_signature": "1",
        f"{b}|n": "7",
        f"{b}|d": db,
        f"{b}|f": "100.0",
        f"{b}|l": "102.0",
        f"{b}|r|ip limit": "7",
    }
    summaries = parse_counters(fields)
    assert [s.count for s in summaries] == [7, 3]
    assert summaries[1] == GroupSummary(GROUP, 3, 100.5, 101.5, {"expired": 2, "bad_signature": 1})


def test_parse_counters_keeps_the_count_of_a_group_edited_by_hand() -> None:
    """A description that does not parse, or a non-number, never drops the group's count."""
    summaries = parse_counters({"g|n": "5", "g|d": "{not json", "g|f": "nope", "g|l": "inf"})
    assert summaries == [GroupSummary(RefusalGroup("refusal.unknown", "unknown", ""), 5, 0, 0, {})]


def test_summary_records_skip_lone_refusals_and_carry_the_counts() -> None:
    """A group refused once has its first record already; others get one summary each."""
    many = GroupSummary(GROUP, 2000, 120.25, 179.5, {"malformed": 1500, "expired": 500})
    lone = GroupSummary(RefusalGroup("auth.refused", "ip:10.0.0.9", "x"), 1, 130.0, 130.0, {})
    records = summary_records(2, 60, [many, lone], now=200.0)
    assert len(records) == 1
    r = records[0]
    assert (r.actor, r.action, r.outcome, r.target, r.time) == (
        "ip:10.0.0.1",
        "auth.refused",
        "denied",
        "demo.echo",
        200.0,
    )
    assert r.reason == (
        "summary count=2000 first=120.250 last=179.500 window=120+60"
        " reasons=malformed:1500,expired:500"
    )


@pytest.mark.integration
async def test_counts_a_flood_per_group_and_window(async_redis: redis.asyncio.Redis) -> None:
    """Only a group's first refusal in a window returns 1; the counts and reasons add up."""
    counter = RefusalCounter(async_redis, stream=OWN_STREAM, window=60)
    firsts = [await counter.count(GROUP, "expired", now=120.0 + i / 100) for i in range(50)]
    assert firsts.count(1) == 1
    await counter.count(GROUP, "malformed at body", now=130.0)
    await counter.count(GROUP, "expired", now=180.0)  # the next window: a first again
    assert await counter.closed_windows(now=185.0, grace=2) == [2]
    summaries = await counter.claim(2, "me")
    assert summaries == [GroupSummary(GROUP, 51, 120.0, 130.0, {"expired": 50, "malformed": 1})]


@pytest.mark.integration
async def test_groups_and_reasons_are_capped(async_redis: redis.asyncio.Redis) -> None:
    """Past max_groups sources fold into one overflow group; past max_reasons into other."""
    counter = RefusalCounter(async_redis, stream=OWN_STREAM, window=60, max_groups=2, max_reasons=1)
    for i in range(10):
        group = RefusalGroup("auth.refused", f"ip:10.0.0.{i}", "t")
        for reason in ("a", "b"):
            await counter.count(group, reason, now=60.0)
    summaries = await counter.claim(1, "me")
    assert summaries is not None
    assert sum(s.count for s in summaries) == 20
    assert len(summaries) == 3
    overflow = next(s for s in summaries if s.group.actor == "*")
    assert overflow.count == 16
    assert overflow.reasons == {"a": 8, "other": 8}


@pytest.mark.integration
async def test_claim_is_exclusive_and_keeps_late_refusals(
    async_redis: redis.asyncio.Redis,
) -> None:
    """One process claims a window; refusals counted after the claim are summarised later."""
    counter = RefusalCounter(async_redis, stream=OWN_STREAM, window=60)
    await counter.count(GROUP, "expired", now=60.0)
    assert await counter.claim(1, "one") is not None
    assert await counter.claim(1, "two") is None  # locked by "one"
    await counter.count(GROUP, "late", now=61.0)
    assert await counter.closed_windows(now=200.0, grace=2) == [1]
    _, closing, lock = counter.keys(1)
    await counter.delete(closing, lock)
    again = await counter.claim(1, "two")
    assert again == [GroupSummary(GROUP, 1, 61.0, 61.0, {"late": 1})]


@pytest.mark.integration
async def test_a_died_claim_is_handed_out_again(async_redis: redis.asyncio.Redis) -> None:
    """A claim whose process died (lock lapsed, closing hash left) is returned again."""
    counter = RefusalCounter(async_redis, stream=OWN_STREAM, window=60)
    await counter.count(GROUP, "expired", now=60.0)
    first = await counter.claim(1, "one", lock_seconds=0.05)
    await async_redis.delete(counter.keys(1)[2])  # the lock lapsed
    assert await counter.claim(1, "two") == first


async def test_an_unreachable_redis_fails_closed() -> None:
    """Counting with Redis down raises AuditError(unavailable): the request is not served."""
    client = redis.asyncio.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    counter = RefusalCounter(client, stream=OWN_STREAM, window=60)
    with pytest.raises(AuditError) as info:
        await counter.count(GROUP, "expired", now=1.0)
    assert info.value.reason == "unavailable"
    await client.aclose()


def test_counter_refuses_bad_limits() -> None:
    """Zero groups or reasons is a configuration error."""
    client = redis.asyncio.Redis()
    with pytest.raises(ConfigError):
        RefusalCounter(client, stream=OWN_STREAM, max_groups=0)


def test_summary_record_holds_no_payload_field() -> None:
    """A summary is an ordinary fixed-field record: nowhere to put a payload or a secret."""
    record = summary_records(0, 60, [GroupSummary(GROUP, 2, 1.0, 2.0, {"x": 2})], now=3.0)[0]
    assert isinstance(record, AuditRecord)
    assert set(record.to_fields()) == {
        "time",
        "actor",
        "action",
        "outcome",
        "target",
        "request_id",
        "reason",
    }


def test_an_overflow_group_refused_once_still_gets_its_summary() -> None:
    """The overflow group's first refusal is not chained, so even a count of 1 is summarised."""
    overflow = RefusalGroup("refusal.overflow", "*", "")
    records = summary_records(1, 60, [GroupSummary(overflow, 1, 60.0, 60.0, {"a": 1})], now=130.0)
    assert len(records) == 1
    assert records[0].reason.startswith("summary count=1 ")
