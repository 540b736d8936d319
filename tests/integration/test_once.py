"""`workers.once`: a side effect runs once per task, as the worker role, against real Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from taskgate.devstack.redis_server import RedisServer
from tests.support.replies import as_fields
from workers.contract.keys import once_key
from workers.once import Once, OnceNotRecorded

pytestmark = pytest.mark.integration


@pytest.fixture
def worker_redis(tls_redis: RedisServer) -> Iterator[redis.Redis]:
    """A client logged in as the worker role, as a task's body would use."""
    client = tls_redis.as_user("worker").client(socket_timeout=5)
    try:
        yield client
    finally:
        client.close()


def test_an_effect_runs_once_however_often_the_body_runs(worker_redis: redis.Redis) -> None:
    """Three runs of the same task call the effect once; the later runs learn it ran."""
    task_id = str(uuid.uuid4())
    calls: list[int] = []

    def send() -> str:
        calls.append(1)
        return "sent"

    outcomes = [Once(worker_redis, task_id, ttl=60).run("send", send) for _ in range(3)]
    assert calls == [1]
    assert [o.ran for o in outcomes] == [True, False, False]
    assert outcomes[0].value == "sent"
    assert outcomes[1].value is None


def test_effects_are_kept_apart_by_name_and_by_task(worker_redis: redis.Redis) -> None:
    """Another effect name, or another task, runs its own effect."""
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    calls: list[str] = []
    Once(worker_redis, first, ttl=60).run("send", lambda: calls.append("a"))
    Once(worker_redis, first, ttl=60).run("log", lambda: calls.append("b"))
    Once(worker_redis, second, ttl=60).run("send", lambda: calls.append("c"))
    assert calls == ["a", "b", "c"]


def test_the_record_expires_and_holds_no_result(
    worker_redis: redis.Redis, tls_redis: RedisServer
) -> None:
    """The record is the effect's name and time only, with the task record's lifetime."""
    task_id = str(uuid.uuid4())
    Once(worker_redis, task_id, ttl=120).run("charge", lambda: "card 4111 charged")
    admin = tls_redis.tls.client()
    try:
        record = as_fields(admin.hgetall(once_key(task_id)))
        ttl = admin.ttl(once_key(task_id))
    finally:
        admin.close()
    assert set(record) == {b"charge"}
    assert b"4111" not in b"".join(record.values())
    assert 0 < ttl <= 120


def test_an_effect_that_raises_is_not_recorded(worker_redis: redis.Redis) -> None:
    """A failed effect leaves no record: the next run tries it again."""
    task_id = str(uuid.uuid4())
    recorder = Once(worker_redis, task_id, ttl=60)

    def boom() -> None:
        raise ConnectionError("upstream down")

    with pytest.raises(ConnectionError):
        recorder.run("send", boom)
    assert recorder.run("send", lambda: "ok").ran is True


def test_a_record_that_cannot_be_written_raises_after_retrying(tls_redis: RedisServer) -> None:
    """With Redis unreachable past ``record_for``, the effect is reported as not recorded."""
    gone = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    clock = iter(range(100))
    pauses: list[float] = []
    recorder = Once(
        gone,
        str(uuid.uuid4()),
        ttl=60,
        record_for=3,
        clock=lambda: float(next(clock)),
        sleep=pauses.append,
    )
    recorder._client.hexists = lambda *_: False  # type: ignore[method-assign]
    with pytest.raises(OnceNotRecorded) as err:
        recorder.run("send", lambda: None)
    assert err.value.reason == "once_not_recorded"
    assert len(pauses) >= 2
    assert pauses == sorted(pauses)


def test_effect_names_are_checked(worker_redis: redis.Redis) -> None:
    """A name outside the allowed shape is a programming error, refused before anything."""
    with pytest.raises(ValueError, match="effect name"):
        Once(worker_redis, str(uuid.uuid4()), ttl=60).run("Send Now", lambda: None)


def test_the_worker_role_cannot_delete_another_tasks_record(
    worker_redis: redis.Redis,
) -> None:
    """The worker may create and read once-records, not delete them."""
    task_id = str(uuid.uuid4())
    Once(worker_redis, task_id, ttl=60).run("send", lambda: None)
    with pytest.raises(redis.exceptions.NoPermissionError):
        worker_redis.delete(once_key(task_id))
    with pytest.raises(redis.exceptions.NoPermissionError):
        worker_redis.hdel(once_key(task_id), "send")
