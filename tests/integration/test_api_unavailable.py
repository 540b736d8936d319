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
from gateway.clients import ClientRegistry
from security.keystore import KeyRing
from taskgate.redis_server import RedisServer, start_redis
from tests.conftest import register_log
from tests.integration.api_support import assert_problem, extra_gateway, mint
from tests.integration.conftest import Gateway

pytestmark = pytest.mark.integration


@pytest.fixture
def own_redis(pki: CertPaths, tmp_path: Path) -> Iterator[RedisServer]:
    """A TLS redis-server for this test alone."""
    server = start_redis(pki, tmp_path / "redis")
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


def _register(server: RedisServer) -> tuple[str, str]:
    async def create() -> tuple[str, str]:
        client = server.tls.async_client()
        try:
            registered, secret = await ClientRegistry(client).create("outage", "tasks:submit:*")
        finally:
            await client.aclose()
        return registered.client_id, secret

    return asyncio.run(create())


def test_redis_down_gives_503_on_submit_and_token_while_healthz_stays_200(
    own_redis: RedisServer, own_gateway: Gateway, keyring: KeyRing
) -> None:
    """With Redis stopped: submit and token are 503 problem+json, /healthz 200, /readyz 503."""
    client_id, secret = _register(own_redis)
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
