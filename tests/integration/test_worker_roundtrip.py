"""Sealed work sent over mTLS reaches a real worker process and its result comes back."""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from billiard.einfo import ExceptionInfo
from celery.concurrency import get_implementation
from celery.exceptions import TimeLimitExceeded
from kombu.message import Message
from kombu.utils.imports import symbol_by_name

from gateway.submission.codec import SealedCodec
from gateway.submission.publisher import OutgoingTask, encode_message
from security.keystore import KeyRing
from taskgate.devstack.procs import Child
from taskgate.devstack.redis_server import RedisServer
from tests.support.broker import broker_channel
from tests.support.messages import wait_result
from workers.app import create_celery
from workers.celery_ext.pool import TaskPool as ResumingTaskPool
from workers.celery_ext.request import (
    DELIVERY_TAG,
    GATE_DELIVERY,
    SealedRequest,
    settles_on_success,
)
from workers.celery_ext.transport import QoS
from workers.contract.deadletters import dlq_key
from workers.contract.keys import INFLIGHT
from workers.contract.wire import (
    DEFAULT_QUEUE,
    KOMBU_UNACKED,
    KOMBU_UNACKED_INDEX,
    PING_TASK,
    decode_record,
    done_key,
    task_key,
)
from workers.execution.task import SealedTask
from workers.sealed import SEAL_KWARG, SealedCall, SealedOrigin, open_call, unseal_call
from workers.settings import WorkerSettings

pytestmark = pytest.mark.integration


def test_sealed_task_runs_on_real_worker_and_result_comes_back_through_celery(
    celery_worker: Child,
    tls_redis: RedisServer,
    keyring: KeyRing,
    worker_keys: KeyRing,
    worker_env: None,
) -> None:
    """system.ping sealed and signed as the gateway does runs; Celery reads the sealed result."""
    task_id = str(uuid.uuid4())
    codec = SealedCodec(keyring, ttl=60)
    message = OutgoingTask(
        task_id=task_id,
        name=PING_TASK,
        body=codec.encode(task_id, PING_TASK, [], {}),
        content_type=codec.content_type,
        queue=DEFAULT_QUEUE,
    )
    with tls_redis.tls.client() as client:
        client.lpush(DEFAULT_QUEUE, encode_message(message))
    app = create_celery(WorkerSettings(), keys=worker_keys)
    try:
        result = app.AsyncResult(task_id).get(timeout=20)
    finally:
        app.close()
    assert result["pong"] is True


def test_worker_configuration_is_tls_only_and_never_pickle(
    tls_redis: RedisServer, worker_keys: KeyRing, worker_env: None
) -> None:
    """Broker and backend both use verified TLS; only sealed content is accepted."""
    settings = WorkerSettings()
    conf = create_celery(settings, keys=worker_keys).conf
    assert conf.broker_url.startswith("rediss://")
    assert conf.broker_use_ssl["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    assert conf.redis_backend_use_ssl["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    assert conf.broker_use_ssl["ssl_certfile"].endswith("worker-client.pem")
    assert conf.accept_content == ["application/x-taskgate-sealed"]
    assert conf.result_accept_content == ["application/x-taskgate-sealed-result"]
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.result_extended is False
    assert conf.worker_enable_remote_control is False
    assert conf.broker_transport_options["visibility_timeout"] > settings.task_time_limit
    # The prefork pool that keeps a half-transferred pipe message across a reconnect.
    assert get_implementation(conf.worker_pool) is ResumingTaskPool


def test_the_celery_app_on_a_worker_cannot_originate_tasks(
    tls_redis: RedisServer, worker_keys: KeyRing, worker_env: None
) -> None:
    """A worker holds no signing key: sending a new task through its app is refused."""
    from kombu.exceptions import EncodeError

    app = create_celery(WorkerSettings(), keys=worker_keys)
    with tls_redis.tls.client() as client:
        queued = client.llen(DEFAULT_QUEUE)
        try:
            with pytest.raises(EncodeError, match="cannot originate"):
                app.send_task(PING_TASK)
        finally:
            app.close()
        assert client.llen(DEFAULT_QUEUE) == queued


def _delivered(encoded: bytes) -> Message:
    """The kombu message a worker's consumer gets for ``encoded`` (a gateway document)."""
    doc = json.loads(encoded)
    return Message(
        body=base64.b64decode(doc["body"]),  # type: ignore[arg-type]  # stubs: str only
        content_type=doc["content-type"],
        content_encoding=doc["content-encoding"],
        headers=doc["headers"],
        properties=doc["properties"],
        delivery_info={"exchange": "", "routing_key": DEFAULT_QUEUE},
        delivery_tag=doc["properties"]["delivery_tag"],
    )


def test_the_pool_gets_the_sealed_call_unopened_and_opens_it_once(
    tls_redis: RedisServer, keyring: KeyRing, worker_keys: KeyRing, worker_env: None
) -> None:
    """The request a worker's main process builds hands the pool the envelope as it came
    (no signature check or decryption on the main process's one thread), never a second
    decode: the pool process opens it once (``open_call``) into the call and its origin."""
    app = create_celery(WorkerSettings(), keys=worker_keys)
    task = app.tasks[PING_TASK]
    task_id = str(uuid.uuid4())
    codec = SealedCodec(keyring, ttl=60)
    body = codec.encode(task_id, PING_TASK, [], {"n": 1})
    message = _delivered(
        encode_message(OutgoingTask(task_id, PING_TASK, body, codec.content_type, DEFAULT_QUEUE))
    )
    try:
        request_cls = symbol_by_name(task.Request)
        assert request_cls is SealedRequest
        request = request_cls(message, app=app, task=task)
    finally:
        app.close()
    assert request.content_type is None  # the pool decodes nothing itself
    args, kwargs, _embed = request.body
    assert args == []
    assert list(kwargs) == [SEAL_KWARG]
    call = kwargs[SEAL_KWARG]
    assert isinstance(call, SealedCall)
    assert call.envelope == body
    assert request.kwargs is kwargs  # the same call Celery keeps for itself
    opened_args, opened = open_call(worker_keys, call)
    assert opened_args == []
    assert opened["n"] == 1
    origin = opened[SEAL_KWARG]
    assert isinstance(origin, SealedOrigin)
    assert (origin.task_id, origin.task_name, origin.envelope) == (task_id, PING_TASK, body)
    unverified = unseal_call(worker_keys, call)  # the pool's way: decrypt, gate, then verify
    unverified.verify()
    assert (unverified.args, unverified.kwargs) == (opened_args, opened)


def test_the_request_tells_the_pool_which_deliveries_its_gate_records(
    tls_redis: RedisServer, keyring: KeyRing, worker_keys: KeyRing, worker_env: None
) -> None:
    """A first delivery of a message with the gateway's copy carries [tag, exchange,
    routing key] to the pool for the start gate; any other carries None - also when its
    headers repeat the field (a retry's message copies the request's custom fields)."""
    app = create_celery(WorkerSettings(), keys=worker_keys)
    task = app.tasks["test.other"]
    codec = SealedCodec(keyring, ttl=60)
    fields = {}
    try:
        for copied in (True, False):
            task_id = str(uuid.uuid4())
            body = codec.encode(task_id, "test.other", [], {"payload": {"note": "n"}})
            doc = json.loads(
                encode_message(
                    OutgoingTask(
                        task_id,
                        "test.other",
                        body,
                        codec.content_type,
                        DEFAULT_QUEUE,
                        copied=copied,
                    )
                )
            )
            doc["headers"][GATE_DELIVERY] = ["stale-tag", "", DEFAULT_QUEUE]
            message = _delivered(json.dumps(doc).encode())
            request = SealedRequest(message, app=app, task=task)
            fields[copied] = (request.request_dict[GATE_DELIVERY], message.delivery_tag)
    finally:
        app.close()
    value, tag = fields[True]
    assert value == [tag, "", DEFAULT_QUEUE]
    assert fields[False][0] is None


def test_a_request_that_is_not_sealed_is_left_as_celery_builds_it(
    tls_redis: RedisServer, worker_keys: KeyRing, worker_env: None
) -> None:
    """Only the sealed content type is handed over opened; anything else keeps its raw
    body and content type (and the pool's own decode refuses it)."""
    app = create_celery(WorkerSettings(), keys=worker_keys)
    task = app.tasks[PING_TASK]
    raw = json.dumps([[], {}, {}]).encode()
    message = _delivered(
        encode_message(
            OutgoingTask("t-1", PING_TASK, raw, "application/json", DEFAULT_QUEUE)
        ).replace(b'"binary"', b'"utf-8"')
    )
    try:
        request = SealedRequest(message, app=app, task=task)
    finally:
        app.close()
    assert request.content_type == "application/json"
    assert request.body == raw


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


class _StandInChannel(SimpleNamespace):
    """What a request's ack or reject reaches: recorded, nothing sent."""

    def __init__(self, qos: QoS) -> None:
        super().__init__(qos=qos, acked=[], rejected=[], no_ack_consumers=None)

    def basic_ack(self, delivery_tag: Any, multiple: bool = False) -> None:
        self.acked.append(delivery_tag if not multiple else ("multiple", delivery_tag))

    def basic_reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        self.rejected.append((delivery_tag, requeue))


def _time_limit_info() -> ExceptionInfo:
    try:
        raise TimeLimitExceeded(2.0)
    except TimeLimitExceeded:
        return ExceptionInfo()


@pytest.mark.parametrize(
    ("recorded", "acked", "rejected"),
    [(True, True, False), (False, True, False), (redis.ConnectionError("down"), False, True)],
    ids=["dead-lettered", "had-finished", "redis-down"],
)
def test_a_hard_time_limit_is_acknowledged_only_once_the_task_is_settled(
    tls_redis: RedisServer,
    keyring: KeyRing,
    worker_keys: KeyRing,
    worker_env: None,
    monkeypatch: pytest.MonkeyPatch,
    recorded: bool | Exception,
    acked: bool,
    rejected: bool,
) -> None:
    """billiard reports the kill to on_failure, then on_timeout: the message is
    acknowledged once the task is dead-lettered (or had finished after all), put back if
    that cannot be recorded; Celery's own FAILURE is never stored over the task's outcome."""
    app = create_celery(WorkerSettings(), keys=worker_keys)
    codec = SealedCodec(keyring, ttl=60)
    task_id = str(uuid.uuid4())
    body = codec.encode(task_id, "test.other", [], {"payload": {"note": "n"}})
    message = _delivered(
        encode_message(OutgoingTask(task_id, "test.other", body, codec.content_type, DEFAULT_QUEUE))
    )
    channel = _StandInChannel(QoS(SimpleNamespace(do_restore=False)))
    message.channel = channel
    try:
        request = SealedRequest(
            message,
            app=app,
            task=app.tasks["test.other"],
            on_ack=message.ack_log_error,  # as the consumer's strategy passes them
            on_reject=message.reject_log_error,
        )
        calls: list[tuple[str, dict[str, Any]]] = []

        def stopped(task_id: str, kwargs: dict[str, Any], fence: Any = None) -> bool:
            calls.append((task_id, kwargs))
            if isinstance(recorded, Exception):
                raise recorded
            return recorded

        monkeypatch.setattr(request.task, "stopped_at_time_limit", stopped)
        stored: list[Any] = []
        monkeypatch.setattr(
            request.task.backend, "mark_as_failure", lambda *a, **_: stored.append(a)
        )
        request.on_failure(_time_limit_info())
        request.on_timeout(False, 2.0)
    finally:
        app.close()
    assert [task for task, _ in calls] == [task_id]
    assert isinstance(calls[0][1][SEAL_KWARG], SealedCall)  # opened by stopped_at_time_limit
    assert calls[0][1][SEAL_KWARG].envelope == body
    assert channel.acked == ([message.delivery_tag] if acked else [])
    assert channel.rejected == ([(message.delivery_tag, True)] if rejected else [])
    assert stored == []


def test_stopped_at_time_limit_dead_letters_only_a_run_that_had_not_finished(
    tls_redis: RedisServer, keyring: KeyRing, worker_keys: KeyRing, worker_env: None
) -> None:
    """A started task is dead-lettered (sealed envelope, TimeLimitExceeded); one whose
    commit landed (its outcome lost on the way to the main process) is left as it is."""
    app = create_celery(WorkerSettings(), keys=worker_keys)
    codec = SealedCodec(keyring, ttl=60)
    task = app.tasks["test.other"]
    assert isinstance(task, SealedTask)
    ids = {name: str(uuid.uuid4()) for name in ("started", "finished")}
    try:
        with tls_redis.tls.client() as client:
            for task_id in ids.values():
                client.hset(task_key(task_id), mapping={"state": "started", "owner": "c1"})
            client.set(done_key(ids["finished"]), "1")
            client.hset(task_key(ids["finished"]), "state", "succeeded")
            outcomes, bodies = {}, {}
            for name, task_id in ids.items():
                body = bodies[name] = codec.encode(
                    task_id, "test.other", [], {"payload": {"note": name}}
                )
                message = _delivered(
                    encode_message(
                        OutgoingTask(task_id, "test.other", body, codec.content_type, DEFAULT_QUEUE)
                    )
                )
                request = SealedRequest(message, app=app, task=task)
                outcomes[name] = task.stopped_at_time_limit(task_id, request.kwargs)
            started = decode_record(client.hgetall(task_key(ids["started"])))
            finished = decode_record(client.hgetall(task_key(ids["finished"])))
            letter = decode_record(client.hgetall(dlq_key(ids["started"])))
            assert not client.exists(dlq_key(ids["finished"]))
    finally:
        app.close()
    assert outcomes == {"started": True, "finished": False}
    assert started["state"] == "dead_lettered"
    assert started["error"] == "TimeLimitExceeded"
    assert finished["state"] == "succeeded"
    assert letter["reason"] == "TimeLimitExceeded"
    assert letter["owner"] == "c1"
    assert base64.b64decode(letter["envelope"]) == bodies["started"]
