"""The sweeper re-queues nothing else: the messages it must leave alone.

A message still queued, in kombu's ``unacked`` hash, put back (re-serialised, or by its
start gate), a revoked task or one past its start, a message inside its grace period,
and one lost again and again past the cap. Each test drives a
:class:`~workers.sweeper.Sweeper` in the test process with an explicit ``now``.
"""

from __future__ import annotations

import json

import httpx
import pytest
import redis
from kombu import Connection

from tests.support.broker import delivery_tag, redis_channel
from tests.support.stacks import (
    FAST_SWEEP,
    RELIABILITY_MODULES,
    SHORT_TIMINGS,
    PrivateStack,
    private_stack,
)
from tests.support.sweeps import GRACE, MakeSweeper, sweeper_fixtures
from tests.support.sweeps import audited_requeues as _audited
from tests.support.sweeps import eligible_at as _eligible
from tests.support.sweeps import lose_message as _lose
from tests.support.sweeps import message_copy as _copy
from tests.support.sweeps import queued as _queue
from tests.support.sweeps import submit_slow as _submit
from workers.celery_ext.transport import recorded_by_gate
from workers.contract.wire import (
    DEFAULT_QUEUE,
    KOMBU_UNACKED,
    KOMBU_UNACKED_INDEX,
    message_copy_key,
    suspect_key,
    task_key,
)
from workers.lifecycle import Lifecycle
from workers.sweeper import MAX_REQUEUES

pytestmark = pytest.mark.integration


# A private Redis and gateway; workers only where a test starts one.
module_stack = private_stack(
    "sweeper", modules=RELIABILITY_MODULES, timings={**SHORT_TIMINGS, **FAST_SWEEP}
)


stack_fixture, http_fixture, client_fixture, sweepers_fixture = sweeper_fixtures()


def _kombu(
    stack: PrivateStack, transport: str = "workers.celery_ext.transport:Transport"
) -> Connection:
    """A kombu connection through taskgate's transport, as a worker consumes (or another)."""
    tls = stack.redis.as_user("worker")
    creds = tls.credentials()
    return Connection(
        tls.url,
        userid=creds["username"],
        password=creds["password"],
        transport=transport,
        ssl=tls.celery_ssl(),
        connect_timeout=5,
    )


# kombu's own Redis transport records every delivery in flight itself, as a consumer does
# for a message it got again (restored, flagged redelivered) or one without a copy.
KOMBU_RECORDS = "redis"


def test_message_still_in_the_queue_is_never_requeued(
    http: httpx.Client, client: redis.Redis, sweepers: MakeSweeper
) -> None:
    """A task waiting behind a backlog is found in its queue by every sweep."""
    task_id = _submit(http)
    sweeper = sweepers()
    now = _eligible(client, task_id)
    for step in range(4):
        result = sweeper.sweep(now=now + step * GRACE)
        assert (result.swept, result.suspected, result.requeued) == (True, [], [])
    assert _queue(client) == [_copy(client, task_id)]
    assert client.exists(suspect_key(task_id)) == 0


def test_message_in_kombus_unacked_hash_is_never_requeued(
    stack: PrivateStack, http: httpx.Client, client: redis.Redis, sweepers: MakeSweeper
) -> None:
    """Popped and recorded in flight by kombu (a worker holds it): not the sweeper's."""
    task_id = _submit(http)
    sweeper = sweepers()
    now = _eligible(client, task_id)
    with _kombu(stack, KOMBU_RECORDS) as conn:
        message = redis_channel(conn.default_channel).basic_get(DEFAULT_QUEUE)
        assert message is not None
        assert message.headers["id"] == task_id
        assert _queue(client) == []
        assert client.hexists(KOMBU_UNACKED, delivery_tag(message))
        for step in range(4):
            assert sweeper.sweep(now=now + step * GRACE).requeued == []
        assert _queue(client) == []
        message.ack()
    assert client.exists(suspect_key(task_id)) == 0


def test_message_kombu_put_back_reserialised_is_never_requeued(
    stack: PrivateStack, http: httpx.Client, client: redis.Redis, sweepers: MakeSweeper
) -> None:
    """A message kombu restored to the queue (flagged redelivered, so no longer the copy's
    bytes) is found by its delivery tag."""
    task_id = _submit(http)
    copy = _copy(client, task_id)
    with _kombu(stack, KOMBU_RECORDS) as conn:
        message = redis_channel(conn.default_channel).basic_get(DEFAULT_QUEUE)
        assert message is not None
        message.reject(requeue=True)
    queued = _queue(client)
    assert len(queued) == 1
    assert queued[0] != copy
    assert b"redelivered" in queued[0]
    sweeper = sweepers()
    now = _eligible(client, task_id)
    for step in range(4):
        assert sweeper.sweep(now=now + step * GRACE).requeued == []
    assert _queue(client) == queued


def test_a_copied_message_is_recorded_in_flight_by_the_start_gate_not_the_consumer(
    stack: PrivateStack, http: httpx.Client, client: redis.Redis
) -> None:
    """The consumer leaves a gateway message's first delivery unrecorded (no round trip);
    the start gate writes kombu's own entry from the copy - [message, exchange, routing
    key], indexed by time - and takes the copy in the same script; the ack removes it."""
    task_id = _submit(http)
    copy = _copy(client, task_id)
    with _kombu(stack) as conn:
        message = redis_channel(conn.default_channel).basic_get(DEFAULT_QUEUE)
        assert message is not None
        tag = delivery_tag(message)
        assert recorded_by_gate(message)
        assert not client.hexists(KOMBU_UNACKED, tag)
        gate = Lifecycle(client).open_gate(task_id, 1, delivery=(tag, "", DEFAULT_QUEUE))
        assert gate.recorded
        raw = client.hget(KOMBU_UNACKED, tag)
        assert raw is not None
        assert json.loads(raw) == [json.loads(copy), "", DEFAULT_QUEUE]
        assert client.zscore(KOMBU_UNACKED_INDEX, tag) is not None
        assert client.exists(message_copy_key(task_id)) == 0
        message.ack()
    assert not client.hexists(KOMBU_UNACKED, tag)
    assert client.zscore(KOMBU_UNACKED_INDEX, tag) is None


def test_a_gate_recorded_delivery_put_back_returns_once_and_is_then_recorded_by_its_consumer(
    stack: PrivateStack, http: httpx.Client, client: redis.Redis
) -> None:
    """kombu restores what the gate recorded (flagged redelivered; the copy is gone, so
    nothing else goes back); the consumer that gets it again records it itself."""
    task_id = _submit(http)
    with _kombu(stack) as conn:
        channel = redis_channel(conn.default_channel)
        message = channel.basic_get(DEFAULT_QUEUE)
        assert message is not None
        Lifecycle(client).open_gate(task_id, 1, delivery=(delivery_tag(message), "", DEFAULT_QUEUE))
        message.reject(requeue=True)
        queued = _queue(client)
        assert len(queued) == 1
        assert json.loads(queued[0])["headers"]["redelivered"] is True
        again = channel.basic_get(DEFAULT_QUEUE)
        assert again is not None
        assert again.delivery_tag == message.delivery_tag
        assert not recorded_by_gate(again)
        assert client.hexists(KOMBU_UNACKED, delivery_tag(again))
        again.ack()
    assert _queue(client) == []


def test_a_delivery_put_back_before_its_gate_returns_as_the_copy_and_is_not_swept(
    stack: PrivateStack, http: httpx.Client, client: redis.Redis, sweepers: MakeSweeper
) -> None:
    """A delivery rejected (or restored) before any gate recorded it goes back as the
    gateway's copy, byte for byte; the sweeper then finds it queued and leaves it."""
    task_id = _submit(http)
    copy = _copy(client, task_id)
    with _kombu(stack) as conn:
        message = redis_channel(conn.default_channel).basic_get(DEFAULT_QUEUE)
        assert message is not None
        assert _queue(client) == []
        message.reject(requeue=True)
    assert _queue(client) == [copy]
    assert not client.hexists(KOMBU_UNACKED, delivery_tag(message))
    sweeper = sweepers()
    now = _eligible(client, task_id)
    for step in range(4):
        assert sweeper.sweep(now=now + step * GRACE).requeued == []
    assert _queue(client) == [copy]


def test_revoked_task_with_a_lost_message_is_not_requeued(
    http: httpx.Client, client: redis.Redis, sweepers: MakeSweeper
) -> None:
    """Cancelled before it ran: nothing to bring back."""
    task_id = _submit(http)
    assert http.delete(f"/v1/tasks/{task_id}").status_code == 202
    _lose(client, task_id)
    sweeper = sweepers()
    now = _eligible(client, task_id)
    for step in range(3):
        assert sweeper.sweep(now=now + step * GRACE).requeued == []
    assert _queue(client) == []


@pytest.mark.parametrize("state", ["started", "retried", "succeeded", "failed"])
def test_task_past_its_start_is_not_requeued_even_with_a_copy_left(
    http: httpx.Client, client: redis.Redis, state: str, sweepers: MakeSweeper
) -> None:
    """Only a task still queued is the sweeper's: a started or retried task's message is
    a worker's (unacked hash, visibility timeout), a finished one needs nothing."""
    task_id = _submit(http)
    _lose(client, task_id)
    client.hset(task_key(task_id), "state", state)
    sweeper = sweepers()
    now = _eligible(client, task_id)
    for step in range(3):
        result = sweeper.sweep(now=now + step * GRACE)
        assert (result.suspected, result.requeued) == ([], [])
    assert _queue(client) == []


def test_message_marked_once_is_not_requeued_before_the_grace_period_and_a_return_clears_it(
    http: httpx.Client, client: redis.Redis, sweepers: MakeSweeper
) -> None:
    """One strike is not enough: a sweep sooner than the grace period after the mark
    leaves it; a message that turns up in flight (kombu recorded its pop) clears the mark,
    and a later loss starts over from the first strike."""
    task_id = _submit(http)
    copy = _lose(client, task_id)
    sweeper = sweepers()
    first = _eligible(client, task_id)
    assert sweeper.sweep(now=first).suspected == [task_id]
    early = sweeper.sweep(now=first + GRACE - 0.5)
    assert (early.suspected, early.requeued) == ([], [])
    assert client.exists(suspect_key(task_id)) == 1
    assert _queue(client) == []
    # kombu's QoS.append lands late (Redis was briefly unreachable): the message is held.
    tag = _delivery_tag(copy)
    client.hset(KOMBU_UNACKED, tag, b"[]")
    assert sweeper.sweep(now=first + GRACE).requeued == []
    assert client.exists(suspect_key(task_id)) == 0
    client.hdel(KOMBU_UNACKED, tag)
    again = sweeper.sweep(now=first + 2 * GRACE)
    assert (again.suspected, again.requeued) == ([task_id], [])


def test_message_lost_again_and_again_is_given_up_after_the_cap(
    http: httpx.Client, client: redis.Redis, sweepers: MakeSweeper
) -> None:
    """A message that keeps vanishing (say, a worker refuses it) is re-queued at most
    MAX_REQUEUES times; then the copy is dropped and the sweeper reports it abandoned."""
    task_id = _submit(http)
    sweeper = sweepers()
    now = _eligible(client, task_id)
    for _ in range(MAX_REQUEUES):
        _lose(client, task_id)
        assert sweeper.sweep(now=now).suspected == [task_id]
        assert sweeper.sweep(now=now + GRACE).requeued == [task_id]
        now += 2 * GRACE
    _lose(client, task_id)
    sweeper.sweep(now=now)
    gave_up = sweeper.sweep(now=now + GRACE)
    assert (gave_up.requeued, gave_up.abandoned) == ([], [task_id])
    assert client.exists(message_copy_key(task_id)) == 0
    assert _queue(client) == []
    assert _audited(client, task_id) == [("task.requeued_lost", "ok")] * MAX_REQUEUES + [
        ("task.requeue_abandoned", "error")
    ]


def _delivery_tag(copy: bytes) -> str:
    return str(json.loads(copy)["properties"]["delivery_tag"])
