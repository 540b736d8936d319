"""A run stopped at its hard time limit, on a real worker's request and broker.

The delivery is acknowledged only once the task is settled (dead-lettered or finished),
and only a run that had not finished is dead-lettered.
"""

from __future__ import annotations

import base64
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from billiard.einfo import ExceptionInfo
from celery.exceptions import TimeLimitExceeded

from gateway.submission.codec import SealedCodec
from gateway.submission.publisher import OutgoingTask, encode_message
from security.keystore import KeyRing
from taskgate.devstack.redis_server import RedisServer
from tests.support.messages import delivered as _delivered
from workers.app import create_celery
from workers.celery_ext.request import SealedRequest
from workers.celery_ext.transport import QoS
from workers.contract.deadletters import dlq_key
from workers.contract.wire import DEFAULT_QUEUE, decode_record, done_key, task_key
from workers.execution.task import SealedTask
from workers.sealed import SEAL_KWARG, SealedCall
from workers.settings import WorkerSettings

pytestmark = pytest.mark.integration


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
