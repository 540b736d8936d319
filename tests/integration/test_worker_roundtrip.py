"""Sealed work sent over mTLS reaches a real worker process and its result comes back."""

from __future__ import annotations

import base64
import json
import ssl
import uuid

import pytest
from kombu.message import Message
from kombu.utils.imports import symbol_by_name

from gateway.codec import SealedCodec
from gateway.publisher import OutgoingTask, encode_message
from security.keystore import KeyRing
from taskgate.procs import Child
from taskgate.redis_server import RedisServer
from workers.app import create_celery
from workers.request import SealedRequest
from workers.sealed import SEAL_KWARG, SealedOrigin
from workers.settings import WorkerSettings
from workers.wire import DEFAULT_QUEUE, PING_TASK

pytestmark = pytest.mark.integration


@pytest.fixture
def worker_env(stack_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in stack_env.items():
        if key.startswith("TASKGATE_"):
            monkeypatch.setenv(key, value)


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
    )


def test_the_pool_gets_the_sealed_call_opened_once_by_the_main_process(
    tls_redis: RedisServer, keyring: KeyRing, worker_keys: KeyRing, worker_env: None
) -> None:
    """The request a worker builds hands the pool the opened call, not the sealed body
    (one signature check and decryption per task, in the main process)."""
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
    assert request.content_type is None
    args, kwargs, _embed = request.body
    assert args == []
    assert kwargs["n"] == 1
    origin = kwargs[SEAL_KWARG]
    assert isinstance(origin, SealedOrigin)
    assert (origin.task_id, origin.task_name, origin.envelope) == (task_id, PING_TASK, body)
    assert request.kwargs is kwargs  # the same opened call Celery keeps for itself


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
