"""Ownership of deliveries in flight (``workers.liveness``), script by script, over real TLS
Redis as the worker's ACL user: renewal, reclaim, the fenced ack, the fenced start gate and
the fenced commit."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from certs.material import CertPaths
from security.audit import AuditRecord, AuditWriter, Write
from security.audit.read import iter_records
from security.errors import AuditError
from security.keystore import KeyRing
from taskgate.devstack.redis_server import RedisServer, start_redis
from tests.support.logs import register_log
from tests.support.redis_server import dump_acl_log
from workers.contract.deadletters import dead_letter
from workers.contract.heartbeat import WORKERS
from workers.contract.keys import DLQ_INDEX, INFLIGHT, dlq_key
from workers.contract.states import TaskState
from workers.contract.wire import KOMBU_UNACKED, KOMBU_UNACKED_INDEX, decode_record, task_key
from workers.execution.cancel import NotHeldError, finish_unless_revoked
from workers.lifecycle import Lifecycle
from workers.liveness import FENCED_ACK, Liveness, TokenSource, holder_of

pytestmark = pytest.mark.integration

LAPSE = 3.0
QUEUE = "taskgate"


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory, pki: CertPaths) -> Iterator[RedisServer]:
    """A Redis of this module's own: no session worker consumes its queue or tends its
    deliveries in flight."""
    server = start_redis(pki, tmp_path_factory.mktemp("fencing") / "redis", harness=True)
    register_log(server.child)
    try:
        yield server
    finally:
        dump_acl_log(server)
        server.stop()


@pytest.fixture
def worker_client(own_redis: RedisServer) -> Iterator[redis.Redis]:
    """The worker role's client on a flushed database."""
    with own_redis.tls.client() as admin:
        admin.flushdb()
    with own_redis.as_user("worker").client() as client:
        yield client


def _in_flight(client: redis.Redis, token: str, *, delivered: float) -> tuple[str, str]:
    """A delivery recorded as kombu and the consumer record it: (tag, task id)."""
    tag, task_id = str(uuid.uuid4()), str(uuid.uuid4())
    message = {
        "body": "c2VhbGVk",
        "headers": {"id": task_id, "task": "test.quick"},
        "properties": {
            "delivery_tag": tag,
            "delivery_info": {"exchange": QUEUE, "routing_key": QUEUE},
            "priority": 0,
        },
    }
    client.hset(KOMBU_UNACKED, tag, json.dumps([message, QUEUE, QUEUE]))
    client.zadd(KOMBU_UNACKED_INDEX, {tag: delivered})
    client.hset(INFLIGHT, tag, token)
    return tag, task_id


def test_tokens_name_their_worker_and_never_repeat_across_processes() -> None:
    """Tokens name the worker; a new process under the same member gets other tokens."""
    source, restarted = TokenSource("host:42"), TokenSource("host:42")
    tokens = [source.next() for _ in range(3)]
    assert len(set(tokens)) == 3
    assert {holder_of(token) for token in tokens} == {"host:42"}
    assert all(token.startswith(source.prefix) for token in tokens)
    assert restarted.next() not in tokens
    assert restarted.prefix != source.prefix
    source.release(tokens[0])
    assert source.snapshot() == (3, sorted(tokens[1:]))


def test_tend_renews_what_it_holds_reclaims_what_lapsed_or_was_let_go_of(
    worker_client: redis.Redis,
) -> None:
    """One beat's tending: the delivery this process holds gets a fresh delivery time; a
    lapsed worker's, an earlier process's under the same member and one this process let
    go of while Redis was unreachable go back to the consuming end of their queue flagged
    redelivered (and leave the in-flight records); a live worker's stays; an entry whose
    delivery is gone goes."""
    now = time.time()
    worker_client.zadd(WORKERS, {"me:1": now, "live:2": now, "dead:3": now - 2 * LAPSE})
    tokens = TokenSource("me:1")
    mine, _ = _in_flight(worker_client, tokens.next(), delivered=now - 100)
    earlier, _ = _in_flight(worker_client, "me:1/n0-8", delivered=now)  # a restarted me
    let_go = tokens.next()  # its ack never reached Redis: only this process forgot it
    released, _ = _in_flight(worker_client, let_go, delivered=now)
    tokens.release(let_go)
    live, _ = _in_flight(worker_client, "live:2/7", delivered=now - 100)
    dead, dead_task = _in_flight(worker_client, "dead:3/5", delivered=now - 100)
    never_beat, _ = _in_flight(worker_client, "gone:4/1", delivered=now - 100)
    worker_client.hset(INFLIGHT, "settled-tag", "dead:3/4")  # its delivery was acknowledged
    seen: list[str] = []
    liveness = Liveness(
        worker_client, tokens=tokens, lapse=LAPSE, on_reclaim=lambda r: seen.append(r.tag)
    )
    reclaimed = liveness.tend(now)
    gone = sorted([dead, never_beat, earlier, released])
    assert sorted(r.tag for r in reclaimed) == gone == sorted(seen)
    assert {r.task_id for r in reclaimed if r.tag == dead} == {dead_task}
    assert worker_client.zscore(KOMBU_UNACKED_INDEX, mine) == pytest.approx(now, abs=0.01)
    assert worker_client.zscore(KOMBU_UNACKED_INDEX, live) == pytest.approx(now - 100, abs=0.01)
    for tag in gone:
        assert not worker_client.hexists(KOMBU_UNACKED, tag)
        assert worker_client.zscore(KOMBU_UNACKED_INDEX, tag) is None
        assert not worker_client.hexists(INFLIGHT, tag)
    assert not worker_client.hexists(INFLIGHT, "settled-tag")
    assert worker_client.hget(INFLIGHT, live) == b"live:2/7"
    queued = [json.loads(raw) for raw in worker_client.lrange(QUEUE, 0, -1)]
    assert sorted(m["properties"]["delivery_tag"] for m in queued) == gone
    assert all(m["headers"]["redelivered"] is True for m in queued)
    assert all(m["properties"]["delivery_info"]["redelivered"] is True for m in queued)
    assert liveness.tend(now) == []  # nothing left to reclaim; nothing moved twice
    assert worker_client.llen(QUEUE) == 4


def test_a_reclaim_moves_a_delivery_once_and_not_after_its_holder_changed(
    worker_client: redis.Redis,
) -> None:
    """Two live workers reclaiming the same delivery: one moves it. A delivery taken over
    by a new holder since the tending read it is not moved."""
    now = time.time()
    tag, _ = _in_flight(worker_client, "dead:3/1", delivered=now)
    first = Liveness(worker_client, tokens=TokenSource("a:1"), lapse=LAPSE)
    second = Liveness(worker_client, tokens=TokenSource("b:2"), lapse=LAPSE)
    assert first.reclaim(tag, "dead:3/1") is not None
    assert second.reclaim(tag, "dead:3/1") is None
    assert worker_client.llen(QUEUE) == 1
    taken, _ = _in_flight(worker_client, "dead:3/2", delivered=now)
    worker_client.hset(INFLIGHT, taken, "b:2/9")  # consumed again by a live worker
    assert first.reclaim(taken, "dead:3/2") is None
    assert worker_client.hexists(KOMBU_UNACKED, taken)


def test_the_fenced_ack_leaves_a_delivery_another_holder_took(
    worker_client: redis.Redis,
) -> None:
    """The ack of a worker whose delivery was reclaimed and taken by another worker (same
    tag) removes nothing; the holder's own ack removes the delivery and its holder record."""
    ack = worker_client.register_script(FENCED_ACK)
    tag, _ = _in_flight(worker_client, "b:2/9", delivered=time.time())
    keys = [INFLIGHT, KOMBU_UNACKED, KOMBU_UNACKED_INDEX]
    assert ack(keys=keys, args=[tag, "a:1/3"]) == 0
    assert worker_client.hexists(KOMBU_UNACKED, tag)
    assert worker_client.hget(INFLIGHT, tag) == b"b:2/9"
    assert ack(keys=keys, args=[tag, "b:2/9"]) == 1
    assert not worker_client.hexists(KOMBU_UNACKED, tag)
    assert worker_client.zscore(KOMBU_UNACKED_INDEX, tag) is None
    assert not worker_client.hexists(INFLIGHT, tag)


def test_the_start_gate_refuses_a_delivery_no_longer_held_by_its_token(
    worker_client: redis.Redis,
) -> None:
    """A delivery reclaimed before its gate ran (its worker paused after the pop): the gate
    does not start it - the record stays queued, no run counted; with its token it starts
    and counts the run."""
    now = time.time()
    life = Lifecycle(worker_client)
    tag, task_id = _in_flight(worker_client, "b:2/9", delivered=now)
    worker_client.hset(task_key(task_id), mapping={"state": "queued", "attempts": "0"})
    stale = life.open_gate(task_id, 1, fence=(tag, "a:1/3"))
    assert not stale.held
    assert decode_record(worker_client.hgetall(task_key(task_id)))["state"] == "queued"
    fresh = life.open_gate(task_id, 1, fence=(tag, "b:2/9"))
    record = decode_record(worker_client.hgetall(task_key(task_id)))
    assert fresh.held
    assert fresh.run_count == 1
    assert record["state"] == "started"
    assert record["run_count"] == "1"


def test_a_fenced_commit_writes_nothing_when_its_condition_fails(
    worker_client: redis.Redis, worker_keys: KeyRing
) -> None:
    """The audit append with a fence: while the token holds, the record and its writes land;
    once another holder has the delivery, nothing is appended or written."""
    writer = AuditWriter(worker_client, worker_keys.audit)
    tag, task_id = _in_flight(worker_client, "a:1/3", delivered=time.time())
    record = AuditRecord.make(
        actor="worker:t", action="task.succeeded", outcome="ok", target=task_id
    )
    done = Write("SET", (f"tg:done:{task_id}",), ("1",))
    worker_client.hset(INFLIGHT, tag, "b:2/9")
    with pytest.raises(AuditError) as refused:
        writer.commit_many([(record, [done])], fence=[(INFLIGHT, tag, "a:1/3")])
    assert refused.value.reason == "fenced"
    assert not worker_client.exists(f"tg:done:{task_id}")
    assert [e for e in iter_records(worker_client) if e.record.target == task_id] == []
    writer.commit_many([(record, [done])], fence=[(INFLIGHT, tag, "b:2/9")])
    assert worker_client.get(f"tg:done:{task_id}") == b"1"
    assert [e.record.action for e in iter_records(worker_client)] == ["task.succeeded"]


def test_finish_and_retry_records_of_a_stale_run_write_nothing(
    worker_client: redis.Redis,
) -> None:
    """A failure, a retry or a cancellable task's success recorded by a run whose delivery
    was taken over: refused, the task record left as the live run keeps it."""
    tag, task_id = _in_flight(worker_client, "b:2/y-9", delivered=time.time())
    worker_client.hset(task_key(task_id), mapping={"state": "started", "attempts": "1"})
    life = Lifecycle(worker_client)
    stale = (tag, "a:1/x-3")
    assert not life.finish(task_id, TaskState.FAILED, ttl=60, error="E", fence=stale)
    assert not life.retried(task_id, "E", 1.0, fence=stale)
    with pytest.raises(NotHeldError):
        finish_unless_revoked(worker_client, task_id, ttl=60, fence=stale)
    record = decode_record(worker_client.hgetall(task_key(task_id)))
    assert record["state"] == "started"
    assert "error" not in record
    assert not worker_client.exists(f"tg:done:{task_id}")
    assert finish_unless_revoked(worker_client, task_id, ttl=60, fence=(tag, "b:2/y-9"))
    assert decode_record(worker_client.hgetall(task_key(task_id)))["state"] == "succeeded"


def test_a_dead_letter_of_a_stale_run_writes_nothing_and_the_holders_lands_whole(
    worker_client: redis.Redis, own_redis: RedisServer
) -> None:
    """Dead-lettering checks the fence in the same script as its writes: a run whose
    delivery was taken over stores no dead letter, indexes nothing and leaves the vault
    entry's expiry alone; the holder's dead letter lands with every field."""
    tag, task_id = _in_flight(worker_client, "b:2/y-9", delivered=time.time())
    vault = f"tg:vault:{task_id}:ref"
    worker_client.set(vault, b"sealed", ex=60)
    letter = {
        "task_id": task_id,
        "name": "test.quick",
        "queue": QUEUE,
        "owner": "client-1",
        "envelope": b"\x00sealed",
        "attempts": 2,
        "reason": "ValueError",
        "vault_keys": [vault],
    }
    assert not dead_letter(worker_client, **letter, fence=(tag, "a:1/x-3"))  # type: ignore[arg-type]
    assert not worker_client.exists(dlq_key(task_id))
    assert worker_client.zscore(DLQ_INDEX, task_id) is None
    with own_redis.tls.client() as admin:  # the worker role may not read a TTL
        assert 0 < admin.ttl(vault) <= 60
    assert dead_letter(worker_client, **letter, fence=(tag, "b:2/y-9"))  # type: ignore[arg-type]
    stored = decode_record(worker_client.hgetall(dlq_key(task_id)))
    assert (stored["name"], stored["owner"], stored["reason"]) == (
        "test.quick",
        "client-1",
        "ValueError",
    )
    assert stored["vault_keys"] == vault
    assert stored["attempts"] == "2"
    assert worker_client.zscore(DLQ_INDEX, task_id) is not None
    with own_redis.tls.client() as admin:
        assert admin.ttl(vault) > 60
