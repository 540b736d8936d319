"""An Idempotency-Key's reservation is a lease: a gateway that dies before its commit frees
the key within seconds, a request still in flight keeps it, a lapsed one cannot commit.

A request is frozen between its reservation and its commit by ``test.held_check``
(``lease_tasks``): its payload check, which the gateway runs between the two, waits while a
hold file exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import redis
import redis.asyncio

from gateway.submission.idempotency import IDEMPOTENCY_TTL, LeaseKeeper, pending_record, release
from gateway.submission.script_batcher import ScriptBatcher
from taskgate.devstack.redis_server import RedisServer
from tests.integration.lease_tasks import hold_file
from tests.support.processes import wait_for
from tests.support.stacks import (
    RELIABILITY_MODULES,
    SHORT_TIMINGS,
    PrivateStack,
    private_stack,
    running,
)
from workers.contract.keys import idempotency_key
from workers.contract.wire import owner_index, queued_key, task_key

pytestmark = pytest.mark.integration

LEASE = 3.0
SUBMIT = "/v1/tasks/test.held_check"
MODULES = json.dumps([*json.loads(RELIABILITY_MODULES), "tests.integration.lease_tasks"])

module_stack = private_stack(
    "leases",
    modules=MODULES,
    timings={**SHORT_TIMINGS, "TASKGATE_IDEMPOTENCY_LEASE": str(LEASE)},
)


@pytest.fixture
def stack(module_stack: PrivateStack) -> Iterator[PrivateStack]:
    with running(module_stack) as stack:
        yield stack


def _record_key(client_id: str, key: str) -> str:
    return idempotency_key(client_id, hashlib.sha256(key.encode()).hexdigest())


def _gateway_http(stack: PrivateStack, token: str) -> httpx.Client:
    if stack.gateway is None:
        raise RuntimeError("the stack has no gateway")
    return stack.gateway.client(headers={"Authorization": f"Bearer {token}"})


class _HeldRequest:
    """A submission sent from a thread, frozen in its payload check while the hold file
    exists; its answer (or transport error) once it returns."""

    def __init__(self, stack: PrivateStack, bearer: str, hold: str, key: str, **extra: str) -> None:
        self.hold = hold_file(stack.side_effects, hold)
        self.hold.parent.mkdir(parents=True, exist_ok=True)
        self.hold.touch()
        self.answer: httpx.Response | Exception | None = None
        http = _gateway_http(stack, bearer)
        http.timeout = httpx.Timeout(90.0)

        def send() -> None:
            try:
                self.answer = http.post(
                    SUBMIT, json={"hold": hold, **extra}, headers={"Idempotency-Key": key}
                )
            except httpx.HTTPError as exc:
                self.answer = exc
            finally:
                http.close()

        self.thread = threading.Thread(target=send, daemon=True)
        self.thread.start()

    def let_go(self) -> None:
        self.hold.unlink(missing_ok=True)

    def result(self) -> httpx.Response | Exception | None:
        self.let_go()
        self.thread.join(timeout=60)
        return self.answer


def _pending(stack: PrivateStack, record_key: str) -> dict[str, str]:
    """Wait until the request has reserved its key; the pending record."""

    def reserved() -> dict[str, str] | None:
        with stack.redis_client() as client:
            raw = client.get(record_key)
        return json.loads(raw) if raw else None

    return dict(wait_for(reserved, timeout=20, what="the idempotency reservation"))


def _kill_gateway(stack: PrivateStack) -> None:
    """kill -9 the gateway (its whole process group): no shutdown, no cleanup."""
    if stack.gateway is None:
        raise RuntimeError("the stack has no gateway")
    child = stack.gateway.child
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    child.process.wait(timeout=10)
    child.stop()


def test_a_gateway_killed_between_reservation_and_commit_frees_the_key_within_seconds(
    stack: PrivateStack,
) -> None:
    """SIGKILL while a request holds its key: the reservation lapses within the lease, the
    client's retry with the same key is a new submission (202, not replayed) that runs
    once, and the accepted key then keeps its day-long record."""
    stack.start_worker()
    client = stack.new_client()
    token = client.token()
    key = f"kill-{uuid.uuid4()}"
    record_key = _record_key(client.client_id, key)
    held = _HeldRequest(stack, token, "kill", key)
    pending = _pending(stack, record_key)
    assert pending["state"] == "pending"
    with stack.redis_client() as redis_client:
        assert 0 < redis_client.pttl(record_key) <= LEASE * 1000  # a lease, not a day
    _kill_gateway(stack)
    killed = time.monotonic()
    answer = held.result()
    assert not isinstance(answer, httpx.Response), "the killed gateway answered"
    stack.start_gateway()
    answers: list[int] = []
    with _gateway_http(stack, token) as http:

        def accepted() -> httpx.Response | None:
            response = http.post(SUBMIT, json={"hold": "kill"}, headers={"Idempotency-Key": key})
            answers.append(response.status_code)
            return response if response.status_code == 202 else None

        response: httpx.Response = wait_for(accepted, timeout=30, what="the retry accepted")
        waited = time.monotonic() - killed
        print(f"retry accepted {waited:.1f}s after the kill; answers before: {answers[:-1]}")
        assert set(answers[:-1]) <= {409}, answers
        assert "idempotent-replayed" not in response.headers
        task_id = response.json()["id"]
        assert task_id != pending["task_id"]  # the dead request's id was never accepted
        again = http.post(SUBMIT, json={"hold": "kill"}, headers={"Idempotency-Key": key})
    assert again.status_code == 202
    assert again.json()["id"] == task_id
    assert again.headers["idempotent-replayed"] == "true"
    assert stack.wait_state(task_id)["state"] == "succeeded"
    assert stack.effects(task_id) == ["effect"]
    with stack.redis_client() as redis_client:
        assert redis_client.ttl(record_key) > IDEMPOTENCY_TTL - 3600
        assert [m.decode() for m in redis_client.zrange(owner_index(client.client_id), 0, -1)] == [
            task_id
        ]
        assert not redis_client.exists(task_key(pending["task_id"]))


def test_redis_killed_between_reservation_and_commit_frees_the_key_within_seconds(
    stack: PrivateStack,
) -> None:
    """kill -9 of Redis while a request holds its key: the request gets 503 (nothing
    accepted); the reservation comes back with Redis from its append-only file, still a
    lease, and the retry with the same key is accepted once it lapses, and runs once."""
    stack.start_worker()
    client = stack.new_client()
    token = client.token()
    key = f"redis-{uuid.uuid4()}"
    record_key = _record_key(client.client_id, key)
    held = _HeldRequest(stack, token, "redis", key)
    pending = _pending(stack, record_key)
    stack.stop_redis(kill=True)
    try:
        answer = held.result()
    finally:
        stack.start_redis_again()
    assert isinstance(answer, httpx.Response), answer
    assert answer.status_code == 503, answer.text
    back = time.monotonic()
    with stack.redis_client() as redis_client:
        assert json.loads(redis_client.get(record_key) or "{}") == pending  # from the AOF
        assert redis_client.pttl(record_key) <= LEASE * 1000
    answers: list[int] = []
    with _gateway_http(stack, token) as http:

        def accepted() -> httpx.Response | None:
            response = http.post(SUBMIT, json={"hold": "redis"}, headers={"Idempotency-Key": key})
            answers.append(response.status_code)
            return response if response.status_code == 202 else None

        response: httpx.Response = wait_for(accepted, timeout=30, what="the retry accepted")
    print(f"retry accepted {time.monotonic() - back:.1f}s after Redis was back: {answers}")
    assert set(answers[:-1]) <= {409, 503}, answers
    assert "idempotent-replayed" not in response.headers
    task_id = response.json()["id"]
    assert task_id != pending["task_id"]
    assert stack.wait_state(task_id)["state"] == "succeeded"
    assert stack.effects(task_id) == ["effect"]


def test_a_request_whose_lapsed_key_was_taken_is_refused_and_enqueues_nothing(
    stack: PrivateStack,
) -> None:
    """A request frozen past its lease while another request took the key: its commit
    writes nothing (409), it gives back its queue slot, and the other's record stands;
    neither its payload nor its secret nor its key shows in the answer, a log or Redis."""
    client = stack.new_client()
    key = f"stale-{uuid.uuid4()}"
    note, secret = f"canary note {uuid.uuid4().int % 10**12}", f"canary-{uuid.uuid4().hex}"
    record_key = _record_key(client.client_id, key)
    held = _HeldRequest(stack, client.token(), "stale", key, note=note, token=secret)
    pending = _pending(stack, record_key)
    other = pending_record(pending["body"], "test.held_check", str(uuid.uuid4()))
    with stack.redis_client() as redis_client:
        redis_client.set(record_key, other, px=60_000)  # the lease lapsed; a retry took it
    answer = held.result()
    assert isinstance(answer, httpx.Response), answer
    assert answer.status_code == 409, answer.text
    assert answer.json()["type"].endswith("idempotency-conflict")
    assert answer.headers["retry-after"] == "1"
    stale_id = pending["task_id"]
    with stack.redis_client() as redis_client:
        assert redis_client.get(record_key) == other.encode()
        assert not redis_client.exists(task_key(stale_id))
        assert redis_client.zscore(queued_key(client.client_id), stale_id) is None
        assert redis_client.zcard(owner_index(client.client_id)) == 0
    assert stack.audited(stale_id, "task.submit") == [(f"client:{client.client_id}", "allowed")]
    with stack.redis_client() as redis_client:
        keys = b"\n".join(redis_client.scan_iter(count=1000))
        values = b"\n".join(
            v for k in redis_client.scan_iter(count=1000) if (v := redis_client.dump(k))
        )
    assert not stack.vault_keys(stale_id)
    shown = [answer.text.encode(), str(answer.headers).encode(), keys, values]
    shown += [path.read_bytes() for path in stack.log_files()]
    for canary in (note, secret, key):
        assert not any(canary.encode() in text for text in shown), canary


def test_a_refused_request_releases_its_own_reservation_only(stack: PrivateStack) -> None:
    """A request refused after its reservation deletes the record while it is its own."""
    client = stack.new_client()
    key = f"refused-{uuid.uuid4()}"
    with _gateway_http(stack, client.token()) as http:
        bad = http.post(SUBMIT, json={"hold": "NOT VALID"}, headers={"Idempotency-Key": key})
        assert bad.status_code == 422
        with stack.redis_client() as redis_client:
            assert not redis_client.exists(_record_key(client.client_id, key))
        good = http.post(SUBMIT, json={"hold": "fine"}, headers={"Idempotency-Key": key})
    assert good.status_code == 202


@pytest.fixture
async def gateway_redis(tls_redis: RedisServer) -> AsyncIterator[redis.asyncio.Redis]:
    """The session Redis as the gateway's ACL user (asyncio)."""
    client = tls_redis.as_user("gateway").async_client()
    try:
        yield client
    finally:
        await client.aclose()


async def test_the_keeper_renews_held_reservations_and_leaves_taken_ones(
    gateway_redis: redis.asyncio.Redis, tls_redis: RedisServer
) -> None:
    """Held past the lease, a reservation is still there; one another request holds is not
    touched and no longer renewed; a dropped one lapses; release deletes only its own."""
    scripts = ScriptBatcher(gateway_redis)
    keeper = LeaseKeeper(scripts, lease=1.0)
    client_id = f"lease-{uuid.uuid4().hex[:8]}"
    mine, taken, dropped = (_record_key(client_id, name) for name in ("mine", "taken", "dropped"))
    value = pending_record("b" * 64, "test.touch", "task-1")
    try:
        for key in (mine, dropped):
            await gateway_redis.set(key, value, px=1000)
            keeper.hold(key, value)
        await gateway_redis.set(taken, "someone else", px=10_000)
        keeper.hold(taken, value)
        keeper.drop(dropped)
        await asyncio.sleep(2.5)
        assert await gateway_redis.get(mine) == value.encode()
        async with tls_redis.tls.async_client() as harness:
            assert 0 < await harness.pttl(mine) <= 1000
        assert await gateway_redis.get(taken) == b"someone else"
        assert not await gateway_redis.exists(dropped)
        assert keeper.held() == 1
        assert not await release(scripts, taken, value)
        assert await gateway_redis.get(taken) == b"someone else"
        keeper.drop(mine)
        assert await release(scripts, mine, value)
        assert not await gateway_redis.exists(mine)
    finally:
        await keeper.stop()
        await scripts.stop()
        await gateway_redis.delete(mine, taken, dropped)
