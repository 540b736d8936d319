"""Sealed work sent over mTLS reaches a real worker process and its result comes back.

The worker's configuration (TLS only, never pickle, no task origination), and the sealed
call handed to the pool unopened with what its gate records.
"""

from __future__ import annotations

import json
import ssl
import uuid

import pytest
from celery.concurrency import get_implementation
from kombu.utils.imports import symbol_by_name

from gateway.submission.codec import SealedCodec
from gateway.submission.publisher import OutgoingTask, encode_message
from security.keystore import KeyRing
from taskgate.devstack.procs import Child
from taskgate.devstack.redis_server import RedisServer
from tests.support.messages import delivered as _delivered
from workers.app import create_celery
from workers.celery_ext.pool import TaskPool as ResumingTaskPool
from workers.celery_ext.request import GATE_DELIVERY, SealedRequest
from workers.contract.wire import DEFAULT_QUEUE, PING_TASK
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
