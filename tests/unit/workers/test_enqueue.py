"""The one enqueue path against a real TLS Redis: the audit record, the message and its
writes land in one script call, or nothing does."""

from __future__ import annotations

import os

import pytest
import redis
import redis.asyncio

from security.audit import (
    AsyncAuditWriter,
    AuditRecord,
    AuditWriter,
    Earlier,
    Write,
    iter_records,
    verify,
)
from security.errors import AuditError
from security.keys import KeySet, Purpose, SymmetricKey
from workers.contract.enqueue import (
    Enqueue,
    NotEnqueuedError,
    aenqueue,
    committer,
    enqueue,
    undo_partial_enqueue,
)
from workers.contract.keys import (
    AUDIT_HEAD,
    AUDIT_STREAM,
    GLOBAL_QUEUED,
    message_copy_key,
    queued_key,
    task_key,
)

pytestmark = pytest.mark.integration

KEYS = KeySet(Purpose.AUDIT_WORKER, [SymmetricKey("audit-1", Purpose.AUDIT_WORKER, os.urandom(32))])
TASK = "5b0e6a51-8d0c-4f5e-9a53-0c3f1d2e4b6a"
# A queue of its own: a session's Celery worker (integration tests first) takes "taskgate".
QUEUE = "taskgate-enqueue-tests"
MESSAGE = b'{"body":"c2VhbGVk","headers":{"id":"' + TASK.encode() + b'"}}'


def _record(action: str = "task.requeued_lost") -> AuditRecord:
    return AuditRecord.make(actor="worker:test", action=action, outcome="ok", target=TASK)


def _job(**options: object) -> Enqueue:
    after = (Write("HSET", (task_key(TASK),), ("state", "queued")),)
    return Enqueue(_record(), TASK, QUEUE, MESSAGE, after=after, **options)  # type: ignore[arg-type]


def _audited(client: redis.Redis) -> list[str]:
    return [e.record.action for e in iter_records(client) if e.record.target == TASK]


def _evalsha_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


def _warm(client: redis.Redis) -> AuditWriter:
    """A writer that has appended once, so it knows the head."""
    writer = AuditWriter(client, KEYS)
    writer.append(AuditRecord.make(actor="worker:test", action="test.start", outcome="ok"))
    return writer


def _nothing_written(client: redis.Redis) -> None:
    assert client.llen(QUEUE) == 0
    assert client.exists(message_copy_key(TASK), task_key(TASK)) == 0
    assert _audited(client) == []


def test_writes_store_the_copy_once_and_push_the_message_last() -> None:
    """The copy carries the message; the push repeats it (sent once) and comes last."""
    before = (Write("SET", ("tg:vault:x",), ("v",)),)
    after = (Write("HSET", (task_key(TASK),), ("state", "queued")),)
    job = Enqueue(_record(), TASK, QUEUE, MESSAGE, copy_ttl=60, before=before, after=after)
    assert job.writes() == [
        before[0],
        Write("SET", (message_copy_key(TASK),), (MESSAGE, "EX", "60"), name="message"),
        after[0],
        Write("LPUSH", (QUEUE,), (Earlier("message", 0),)),
    ]
    back = Enqueue(_record(), TASK, QUEUE, MESSAGE, consuming_end=True)
    assert back.writes() == [Write("RPUSH", (QUEUE,), (MESSAGE,))]
    assert back.item() == (back.record, back.writes())


def test_record_message_and_writes_land_together_in_one_script_call(
    redis_client: redis.Redis,
) -> None:
    """One EVALSHA: one audit record, one queued message, its copy and its writes."""
    writer = _warm(redis_client)
    calls = _evalsha_calls(redis_client)
    entry = enqueue(writer, _job(copy_ttl=60))
    assert _evalsha_calls(redis_client) - calls == 1
    assert redis_client.lrange(QUEUE, 0, -1) == [MESSAGE]
    assert redis_client.get(message_copy_key(TASK)) == MESSAGE
    assert 0 < redis_client.ttl(message_copy_key(TASK)) <= 60
    assert redis_client.hget(task_key(TASK), "state") == b"queued"
    assert _audited(redis_client) == ["task.requeued_lost"]
    assert entry.record.action == "task.requeued_lost"
    assert verify(redis_client, KEYS).ok


def test_a_failed_audit_append_queues_nothing(redis_client: redis.Redis) -> None:
    """The head key gone over an existing log: the append is refused, nothing is written."""
    _warm(redis_client)
    redis_client.delete(AUDIT_HEAD)
    with pytest.raises(AuditError) as info:
        enqueue(AuditWriter(redis_client, KEYS), _job(copy_ttl=60))
    assert info.value.reason == "head_missing"
    _nothing_written(redis_client)


def test_a_moved_head_is_retried_and_the_message_is_queued_once(
    redis_client: redis.Redis,
) -> None:
    """Another writer appended since this writer last did: it re-chains and re-sends; the
    writes run once, with the record that won, and the chain verifies."""
    writer = _warm(redis_client)
    _warm(redis_client)  # moves the head this writer knows
    conflicts = writer.counts()[1]
    enqueue(writer, _job(copy_ttl=60))
    assert writer.counts()[1] == conflicts + 1
    assert redis_client.lrange(QUEUE, 0, -1) == [MESSAGE]
    assert _audited(redis_client) == ["task.requeued_lost"]
    assert redis_client.xlen(AUDIT_STREAM) == 3
    assert verify(redis_client, KEYS).ok


def test_a_fence_that_does_not_hold_writes_nothing(redis_client: redis.Redis) -> None:
    """A fenced enqueue writes nothing, audit record included, unless every condition
    holds; an absent field is the empty value."""
    writer = _warm(redis_client)
    redis_client.hset(task_key(TASK), "state", "started")
    with pytest.raises(AuditError) as info:
        enqueue(writer, _job(), fence=[(task_key(TASK), "state", "queued")])
    assert info.value.reason == "fenced"
    assert redis_client.llen(QUEUE) == 0
    assert _audited(redis_client) == []
    redis_client.hset(task_key(TASK), "state", "queued")
    with pytest.raises(AuditError):
        enqueue(writer, _job(), fence=[(task_key(TASK), "requeues", "0")])
    enqueue(writer, _job(), fence=[(task_key(TASK), "requeues", "")])
    assert redis_client.lrange(QUEUE, 0, -1) == [MESSAGE]


def test_a_refused_write_stops_before_the_push_and_is_raised(redis_client: redis.Redis) -> None:
    """Redis refusing a write (the task record is a string here) skips the push; the
    record stands and the refusal comes back as NotEnqueuedError."""
    writer = _warm(redis_client)
    redis_client.set(task_key(TASK), "not a hash")
    with pytest.raises(NotEnqueuedError) as info:
        enqueue(writer, _job(copy_ttl=60))
    assert "WRONGTYPE" in info.value.reason
    assert redis_client.llen(QUEUE) == 0
    assert _audited(redis_client) == ["task.requeued_lost"]


async def test_async_enqueue_through_a_committer(async_redis: redis.asyncio.Redis) -> None:
    """aenqueue with an AsyncAuditWriter: queued with its record; a refused write raises
    and undo_partial_enqueue leaves nothing the sweeper could re-queue."""
    commit = committer(AsyncAuditWriter(async_redis, KEYS))
    await aenqueue(commit, _job(copy_ttl=60))
    assert await async_redis.lrange(QUEUE, 0, -1) == [MESSAGE]
    await async_redis.delete(QUEUE)
    await async_redis.set(QUEUE, "not a list")
    await async_redis.zadd(GLOBAL_QUEUED, {TASK: 1.0})
    await async_redis.zadd(queued_key("c1"), {TASK: 1.0})
    with pytest.raises(NotEnqueuedError):
        await aenqueue(commit, _job(copy_ttl=60))
    await undo_partial_enqueue(async_redis, TASK, "c1")
    assert await async_redis.exists(message_copy_key(TASK)) == 0
    assert await async_redis.hget(task_key(TASK), "state") == b"failed"
    assert await async_redis.hget(task_key(TASK), "error") == b"not_enqueued"
    assert await async_redis.zscore(GLOBAL_QUEUED, TASK) is None
    assert await async_redis.zscore(queued_key("c1"), TASK) is None
