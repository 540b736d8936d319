"""/readyz follows the workers' heartbeats: ready under a backlog, not ready without workers."""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from gateway.submission.codec import SealedCodec
from gateway.submission.publisher import OutgoingTask, encode_message
from security.errors import ConfigError
from security.keystore import KeyRing
from taskgate.devstack.redis_server import RedisServer
from tests.support.processes import wait_for
from tests.support.stacks import (
    RELIABILITY_MODULES,
    SHORT_TIMINGS,
    PrivateStack,
    private_stack,
    running,
)
from workers.contract.heartbeat import WORKERS, live_workers
from workers.contract.wire import DEFAULT_QUEUE, PING_TASK
from workers.heartbeat import PRUNE_AFTER_LAPSES, HeartbeatWriter
from workers.settings import WorkerSettings

pytestmark = pytest.mark.integration

INTERVAL, LAPSE = 0.5, 2.0
BACKLOG = 2_000
# How long after a worker vanishes /readyz may still say 200: its last beat ages past the
# lapse (one interval after it at most) and the gateway reuses an outcome for 1 s.
NOTICED_WITHIN = LAPSE + INTERVAL + 1.0 + 1.0

module_stack = private_stack(
    "heartbeats",
    modules=RELIABILITY_MODULES,
    timings={
        **SHORT_TIMINGS,
        "TASKGATE_HEARTBEAT_INTERVAL": str(INTERVAL),
        "TASKGATE_HEARTBEAT_LAPSE": str(LAPSE),
    },
)


@pytest.fixture
def stack(module_stack: PrivateStack) -> Iterator[PrivateStack]:
    with running(module_stack) as stack:
        yield stack


def _readyz(stack: PrivateStack) -> httpx.Response:
    if stack.gateway is None:
        raise RuntimeError("the stack has no gateway")
    with stack.gateway.client() as http:
        return http.get("/readyz")


def _ready(stack: PrivateStack, timeout: float = 10) -> dict[str, Any]:
    response = wait_for(
        lambda: (r := _readyz(stack)).status_code == 200 and r, timeout=timeout, what="/readyz 200"
    )
    return dict(response.json())


def _not_ready(stack: PrivateStack, timeout: float) -> httpx.Response:
    response: httpx.Response = wait_for(
        lambda: (r := _readyz(stack)).status_code == 503 and r, timeout=timeout, what="/readyz 503"
    )
    return response


def _assert_names_the_workers(response: httpx.Response) -> None:
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["checks"] == {"redis": "ok", "workers": f"no worker heartbeat within {LAPSE:g}s"}
    assert body["live_workers"] == 0
    assert body["detail"] == f"workers: no worker heartbeat within {LAPSE:g}s"


def _pings(keyring: KeyRing, count: int) -> list[bytes | str]:
    codec = SealedCodec(keyring, ttl=120)
    messages: list[bytes | str] = []
    for _ in range(count):
        task_id = str(uuid.uuid4())
        body = codec.encode(task_id, PING_TASK, [], {})
        message = OutgoingTask(task_id, PING_TASK, body, codec.content_type, DEFAULT_QUEUE)
        messages.append(encode_message(message))
    return messages


def test_readyz_stays_200_behind_a_backlog(stack: PrivateStack, keyring: KeyRing) -> None:
    """With the only worker busy and 2,000 tasks queued behind it, /readyz answers 200 at
    once, every time (a ping through the queue would wait behind all of them)."""
    stack.start_worker(concurrency=1)
    _ready(stack)
    with stack.new_client().http() as http:
        response = http.post("/v1/tasks/test.slow_effect", json={"seconds": 8})
    assert response.status_code == 202, response.text
    task_id = response.json()["id"]
    wait_for(lambda: stack.starts(task_id), timeout=20, what="the slow task starting")
    messages = _pings(keyring, BACKLOG)
    with stack.redis_client() as client:
        try:
            client.lpush(DEFAULT_QUEUE, *messages)
            deadline = time.monotonic() + 4
            while time.monotonic() < deadline:
                started = time.monotonic()
                response = _readyz(stack)
                assert response.status_code == 200, response.text
                assert time.monotonic() - started < 1.0
                assert response.json()["live_workers"] == 1
                time.sleep(0.25)
            assert client.llen(DEFAULT_QUEUE) >= BACKLOG - 1  # the backlog was there all along
        finally:
            client.delete(DEFAULT_QUEUE)


def test_readyz_turns_503_when_the_workers_stop_and_200_when_one_returns(
    stack: PrivateStack,
) -> None:
    """A warm shutdown removes the worker's heartbeat: 503 naming the workers within the
    lapse; a restarted worker makes /readyz 200 again."""
    stack.start_worker()
    assert _ready(stack)["live_workers"] == 1
    stack.stop_workers()
    stopped = time.monotonic()
    with stack.redis_client() as client:
        assert client.zcard(WORKERS) == 0  # it left: no waiting for the lapse
    response = _not_ready(stack, timeout=NOTICED_WITHIN)
    assert time.monotonic() - stopped < NOTICED_WITHIN
    _assert_names_the_workers(response)
    assert response.headers["retry-after"] == "5"
    stack.start_worker()
    assert _ready(stack)["checks"] == {"redis": "ok", "workers": "ok"}


def test_a_killed_worker_lapses_and_a_restarted_one_is_counted(stack: PrivateStack) -> None:
    """kill -9 leaves the last beat behind; once it is older than the lapse /readyz is
    503, and a new worker makes it 200 again."""
    worker = stack.start_worker()
    _ready(stack)
    stack.kill_worker(worker)
    killed = time.monotonic()
    with stack.redis_client() as client:
        assert client.zcard(WORKERS) == 1  # nobody removed it: it has to age out
    response = _not_ready(stack, timeout=NOTICED_WITHIN)
    assert time.monotonic() - killed < NOTICED_WITHIN
    _assert_names_the_workers(response)
    stack.workers.remove(worker)
    stack.start_worker()
    assert _ready(stack)["live_workers"] == 1


def test_readyz_is_200_behind_a_backlog_of_busy_workers_and_503_once_they_all_die(
    stack: PrivateStack, keyring: KeyRing
) -> None:
    """Two workers, each busy with a slow task, and 2,000 tasks queued: /readyz is 200 every
    time; with every worker killed (-9, their beats left behind) and the backlog still
    queued, it turns 503 within the heartbeat lapse."""
    workers = [stack.start_worker(concurrency=1) for _ in range(2)]
    assert _ready(stack)["live_workers"] == 2
    with stack.new_client().http() as http:
        slow = [http.post("/v1/tasks/test.slow_effect", json={"seconds": 30}) for _ in workers]
    assert [r.status_code for r in slow] == [202, 202], [r.text for r in slow]
    for response in slow:
        task_id = response.json()["id"]
        wait_for(functools.partial(stack.starts, task_id), timeout=20, what="both workers busy")
    with stack.redis_client() as client:
        try:
            client.lpush(DEFAULT_QUEUE, *_pings(keyring, BACKLOG))
            for _ in range(8):
                response = _readyz(stack)
                assert response.status_code == 200, response.text
                assert response.json()["live_workers"] == 2
                time.sleep(0.25)
            for worker in workers:
                stack.kill_worker(worker)
                stack.workers.remove(worker)
            killed = time.monotonic()
            response = _not_ready(stack, timeout=NOTICED_WITHIN)
            print(f"/readyz 503 {time.monotonic() - killed:.1f}s after the last worker died")
            _assert_names_the_workers(response)
            assert client.llen(DEFAULT_QUEUE) >= BACKLOG  # the backlog was there all along
        finally:
            client.delete(DEFAULT_QUEUE, "unacked", "unacked_index")


def test_the_writer_beats_prunes_and_leaves(
    tls_redis: RedisServer, redis_client: redis.Redis
) -> None:
    """Over real TLS as the worker role: start beats at once and every interval, a beat
    drops members silent for several lapses (keeps younger ones), stop removes the member."""
    now = time.time()
    ancient, recent = now - (PRUNE_AFTER_LAPSES + 1) * LAPSE, now - 2 * LAPSE
    redis_client.zadd(WORKERS, {"ancient:1": ancient, "recent:2": recent})
    with tls_redis.as_user("worker").client() as client:
        writer = HeartbeatWriter(client, interval=0.2, lapse=LAPSE, member="test-host:7")
        writer.start()
        try:
            first = redis_client.zscore(WORKERS, "test-host:7")
            assert first is not None
            assert abs(first - time.time()) < 2
            wait_for(
                lambda: (redis_client.zscore(WORKERS, "test-host:7") or 0) > first,
                timeout=5,
                what="a second beat",
            )
            assert redis_client.zscore(WORKERS, "ancient:1") is None
            assert redis_client.zscore(WORKERS, "recent:2") == recent
            assert live_workers(redis_client, time.time(), LAPSE) >= 1
        finally:
            writer.stop()
    assert not writer.running()
    assert redis_client.zscore(WORKERS, "test-host:7") is None


def test_a_heartbeat_interval_not_below_the_lapse_is_refused(
    worker_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that would beat less than once per lapse refuses to start."""
    monkeypatch.setenv("TASKGATE_HEARTBEAT_INTERVAL", "15")
    monkeypatch.setenv("TASKGATE_HEARTBEAT_LAPSE", "15")
    with pytest.raises(ConfigError, match="TASKGATE_HEARTBEAT_INTERVAL"):
        WorkerSettings()
