"""Fail closed when Redis is gone: 503 problem+json on submit and token, liveness still 200.

A private redis-server + gateway pair is started here (the session's Redis must stay up for
every other test); the same CA, keys and admin token are reused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from certs.material import CertPaths
from gateway.stores.clients import ClientRegistry
from security.audit import iter_records
from security.keystore import KeyRing
from taskgate.devstack.redis_server import RedisServer, start_redis
from tests.support.api import assert_problem, mint
from tests.support.gateways import Gateway, extra_gateway
from tests.support.logs import register_log
from workers.contract.wire import (
    DEFAULT_QUEUE,
    GLOBAL_QUEUED,
    decode_record,
    message_copy_key,
    owner_index,
    task_key,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def own_redis(pki: CertPaths, tmp_path: Path) -> Iterator[RedisServer]:
    """A TLS redis-server for this test alone."""
    server = start_redis(pki, tmp_path / "redis", harness=True)
    register_log(server.child)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_gateway(
    own_redis: RedisServer,
    stack_env: dict[str, str],
    session_dir: Path,
    pki: CertPaths,
) -> Iterator[Gateway]:
    """A gateway whose only Redis is ``own_redis`` (no worker: /readyz is never 200 here)."""
    env = {**stack_env, "TASKGATE_REDIS_URL": own_redis.url}
    with extra_gateway("gateway-own-redis", env, session_dir, pki) as gateway:
        yield gateway


def _register(server: RedisServer, keyring: KeyRing) -> tuple[str, str]:
    async def create() -> tuple[str, str]:
        client = server.tls.async_client()
        try:
            registered, secret = await ClientRegistry(client, keyring.state).create(
                "outage", "tasks:submit:*"
            )
        finally:
            await client.aclose()
        return registered.client_id, secret

    return asyncio.run(create())


def test_redis_down_gives_503_on_submit_and_token_while_healthz_stays_200(
    own_redis: RedisServer, own_gateway: Gateway, keyring: KeyRing
) -> None:
    """With Redis stopped: submit and token are 503 problem+json, /healthz 200, /readyz 503."""
    client_id, secret = _register(own_redis, keyring)
    grant = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    auth = {"Authorization": f"Bearer {mint(keyring, client_id)}"}
    with own_gateway.client() as http:
        # Control: with Redis up this gateway accepts both.
        assert (
            http.post("/v1/tasks/test.touch", json={"note": "up"}, headers=auth).status_code == 202
        )
        assert http.post("/v1/token", data=grant).status_code == 200

        own_redis.stop()

        submitted = http.post("/v1/tasks/test.touch", json={"note": "down"}, headers=auth)
        token = http.post("/v1/token", data=grant)
        alive = http.get("/healthz")
        ready = http.get("/readyz")
    for response in (submitted, token):
        problem = assert_problem(response, 503)
        assert problem["title"] == "Service unavailable"
        assert "rediss://" not in response.text
        assert "localhost" not in response.text
        assert int(response.headers["retry-after"]) > 0
    assert "access_token" not in token.text
    assert alive.status_code == 200
    assert alive.json() == {"status": "ok"}
    readiness = assert_problem(ready, 503)
    assert readiness["checks"]["redis"] != "ok"
    assert "rediss://" not in ready.text


def test_a_refused_enqueue_is_an_error_and_leaves_nothing_to_run(
    own_redis: RedisServer, own_gateway: Gateway, keyring: KeyRing
) -> None:
    """Redis refusing the broker push (here: the queue key holds a string) gives a 500
    problem, an audited error after the 'allowed' record, a failed task record, and no
    message copy the sweeper could later re-queue."""
    client_id, _ = _register(own_redis, keyring)
    auth = {"Authorization": f"Bearer {mint(keyring, client_id)}"}
    with own_redis.tls.client() as redis_client:
        redis_client.set(DEFAULT_QUEUE, "not a list")
        with own_gateway.client() as http:
            response = http.post("/v1/tasks/test.touch", json={"note": "x"}, headers=auth)
        problem = assert_problem(response, 500)
        assert "WRONGTYPE" not in response.text
        task_ids = [m.decode() for m in redis_client.zrange(owner_index(client_id), 0, -1)]
        assert len(task_ids) == 1
        task_id = task_ids[0]
        record = decode_record(redis_client.hgetall(task_key(task_id)))
        assert (record["state"], record["error"]) == ("failed", "not_enqueued")
        assert redis_client.exists(message_copy_key(task_id)) == 0
        assert redis_client.zscore(GLOBAL_QUEUED, task_id) is None
        assert redis_client.get(DEFAULT_QUEUE) == b"not a list"
        outcomes = [
            (e.record.action, e.record.outcome)
            for e in iter_records(redis_client)
            if e.record.target == task_id
        ]
    assert outcomes == [("task.submit", "allowed"), ("task.submit", "error")]
    assert problem["request_id"]
