"""A real worker settles each delivery once: acknowledged in its task's success commit.

A declared task acknowledges inside its commit, a settled delivery frees its slot without
a second acknowledgement, one broker client per connection pool, and only a returned
declared task settles its own delivery.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from kombu.message import Message

from gateway.submission.codec import SealedCodec
from gateway.submission.publisher import OutgoingTask, encode_message
from security.keystore import KeyRing
from taskgate.devstack.procs import Child
from taskgate.devstack.redis_server import RedisServer
from tests.support.broker import broker_channel
from tests.support.messages import delivered as _delivered
from tests.support.messages import wait_result
from workers.app import create_celery
from workers.celery_ext.request import DELIVERY_TAG, SealedRequest, settles_on_success
from workers.celery_ext.transport import QoS
from workers.contract.keys import INFLIGHT
from workers.contract.wire import DEFAULT_QUEUE, KOMBU_UNACKED, KOMBU_UNACKED_INDEX, PING_TASK
from workers.settings import WorkerSettings

pytestmark = pytest.mark.integration


def _watch_commands(client: redis.Redis, seen: list[dict[str, Any]], stop: threading.Event) -> None:
    """Collect every command Redis executes (MONITOR) until ``stop`` is set."""
    with client.monitor() as monitor:  # type: ignore[no-untyped-call]  # untyped in redis-py
        while not stop.is_set():
            seen.append(monitor.next_command())


def test_a_declared_task_acknowledges_its_delivery_in_its_success_commit(
    celery_worker: Child, tls_redis: RedisServer, keyring: KeyRing
) -> None:
    """The success commit (completion record, result, audit record) also removes the
    delivery from kombu's unacked hash and index, in the same script; the worker's main
    process then sends no acknowledgement of its own."""
    task_id = str(uuid.uuid4())
    codec = SealedCodec(keyring, ttl=60)
    body = codec.encode(task_id, "test.other", [], {"payload": {"note": "settled"}})
    encoded = encode_message(
        OutgoingTask(task_id, "test.other", body, codec.content_type, DEFAULT_QUEUE)
    )
    tag = json.loads(encoded)["properties"]["delivery_tag"]
    seen: list[dict[str, Any]] = []
    stop = threading.Event()
    with tls_redis.tls.client() as client:
        watcher = threading.Thread(
            target=_watch_commands, args=(tls_redis.tls.client(), seen, stop), daemon=True
        )
        watcher.start()
        time.sleep(0.2)  # MONITOR is on before the message is queued
        client.lpush(DEFAULT_QUEUE, encoded)
        assert wait_result(client, keyring, task_id)["status"] == "SUCCESS"
        time.sleep(0.5)  # the main process's ack (if any) follows the pool's report
        client.ping()  # one more command, so the watcher's read returns
        stop.set()
        watcher.join(timeout=10)
        assert not client.hexists(KOMBU_UNACKED, tag)
        assert client.zscore(KOMBU_UNACKED_INDEX, tag) is None
    removals = [
        (entry["client_type"], *entry["command"].replace('"', "").split()[:2])
        for entry in seen
        if tag in entry["command"] and entry["command"].split()[0] in {"ZREM", "HDEL"}
    ]
    # kombu's hash and index, and the delivery's holder (workers.liveness): all in the commit
    assert sorted(removals) == sorted(
        [
            ("lua", "HDEL", KOMBU_UNACKED),
            ("lua", "HDEL", INFLIGHT),
            ("lua", "ZREM", KOMBU_UNACKED_INDEX),
        ]
    )


def test_a_settled_delivery_frees_its_slot_without_a_second_acknowledgement(
    tls_redis: RedisServer, worker_keys: KeyRing, worker_env: None
) -> None:
    """The consumer's ack of a delivery the task settled only frees the prefetch slot; any
    other delivery is still acknowledged in Redis by the ack."""
    app = create_celery(WorkerSettings(), keys=worker_keys)
    try:
        with app.connection_for_read() as connection, tls_redis.tls.client() as client:
            channel = broker_channel(connection.default_channel)
            qos = channel.qos
            assert isinstance(qos, QoS)
            client.delete(KOMBU_UNACKED, KOMBU_UNACKED_INDEX)
            queue = f"taskgate-settle-{uuid.uuid4().hex}"  # inside the worker's queue keys
            for n in range(2):
                client.lpush(queue, json.dumps(_plain_document(n)))
            settled = channel.basic_get(queue, no_ack=False)
            other = channel.basic_get(queue, no_ack=False)
            assert settled is not None
            assert other is not None
            assert client.hlen(KOMBU_UNACKED) == 2
            qos.settled_by_task(settled.delivery_tag)
            settled.ack()
            other.ack()
            # Redis still lists the settled delivery: only the task's commit removes it.
            assert client.hexists(KOMBU_UNACKED, settled.delivery_tag)
            assert not client.hexists(KOMBU_UNACKED, other.delivery_tag)
            # kombu drops acknowledged deliveries lazily (a private method, not in its stubs)
            qos._flush()  # type: ignore[attr-defined]
            assert not qos._delivered  # both prefetch slots are free
            client.delete(KOMBU_UNACKED, KOMBU_UNACKED_INDEX, queue)
    finally:
        app.close()


def test_the_broker_channel_reuses_one_client_per_connection_pool(
    tls_redis: RedisServer, worker_keys: KeyRing, worker_env: None
) -> None:
    """Appends, acks and restores share one synchronous client (kombu built one per call);
    a replaced pool gets a new one; the consuming (asynchronous) clients are kombu's own."""
    app = create_celery(WorkerSettings(), keys=worker_keys)
    try:
        with app.connection_for_read() as connection:
            channel = broker_channel(connection.default_channel)
            first = channel._create_client()
            assert channel._create_client() is first
            with channel.conn_or_acquire() as acquired:
                assert acquired is first
                assert acquired.ping() is True
            assert channel._create_client(asynchronous=True) is not first
            # kombu's private pool attribute is not in its stubs
            old_pool = channel._pool  # type: ignore[attr-defined]
            # what kombu does to start over after a lost connection
            channel._pool = None  # type: ignore[attr-defined]
            try:
                fresh = channel._create_client()
                assert fresh is not first
                assert fresh.connection_pool is channel.pool
                assert fresh.ping() is True
            finally:
                channel.pool.disconnect()
                channel._pool = old_pool  # type: ignore[attr-defined]
    finally:
        app.close()


def _plain_document(n: int) -> dict[str, Any]:
    """A kombu message document (its body never decoded here)."""
    return {
        "body": base64.b64encode(b"[]").decode(),
        "content-encoding": "binary",
        "content-type": "application/x-taskgate-sealed",
        "headers": {"n": n},
        "properties": {
            "delivery_tag": str(uuid.uuid4()),
            "body_encoding": "base64",
            "delivery_info": {"exchange": "", "routing_key": "settle"},
        },
    }


def test_only_a_returned_declared_task_settles_its_own_delivery(
    tls_redis: RedisServer, keyring: KeyRing, worker_keys: KeyRing, worker_env: None
) -> None:
    """A declared task's request carries the delivery tag to the pool, and its ack after
    the pool reports a return leaves Redis to the task's commit; an ack without that report
    (failure, retry, refusal) is a full one. system.ping (acknowledged on receipt, nothing
    committed) never settles its own delivery."""
    app = create_celery(WorkerSettings(), keys=worker_keys)
    codec = SealedCodec(keyring, ttl=60)

    def request(name: str, kwargs: dict[str, Any]) -> tuple[Message, QoS, SealedRequest]:
        task_id = str(uuid.uuid4())
        body = codec.encode(task_id, name, [], kwargs)
        message = _delivered(
            encode_message(OutgoingTask(task_id, name, body, codec.content_type, DEFAULT_QUEUE))
        )
        qos = QoS(SimpleNamespace(do_restore=False))  # a stand-in channel: nothing to restore
        message.channel = SimpleNamespace(qos=qos)
        return message, qos, SealedRequest(message, app=app, task=app.tasks[name])

    try:
        message, qos, returned = request("test.other", {"payload": {"note": "x"}})
        assert returned.request_dict[DELIVERY_TAG] == message.delivery_tag
        returned.on_success((0, "{'note_length': 1}", 0.01))
        assert returned.acknowledged
        assert qos._settled == {message.delivery_tag}

        message, qos, failed = request("test.other", {"payload": {"note": "y"}})
        failed.acknowledge()  # what on_failure / on_retry do after a failed run
        assert failed.acknowledged
        assert qos._settled == set()

        _message, qos, ping = request(PING_TASK, {})
        assert not settles_on_success(ping.task)
        assert DELIVERY_TAG not in ping.request_dict
        ping.acknowledge()
        assert qos._settled == set()
    finally:
        app.close()
