"""Sealed work sent over mTLS reaches a real worker process and its result comes back."""

from __future__ import annotations

import ssl
import uuid

import pytest
import redis

from gateway.codec import SealedCodec
from gateway.publisher import OutgoingTask, encode_message
from security.keystore import KeyRing
from taskgate.procs import Child
from taskgate.redis_server import RedisServer
from workers.app import create_celery
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
    try:
        with pytest.raises(EncodeError, match="cannot originate"):
            app.send_task(PING_TASK)
    finally:
        app.close()
    with tls_redis.tls.client() as client:
        assert client.llen(DEFAULT_QUEUE) == 0 or isinstance(client, redis.Redis)
