"""The gateway serves HTTPS only, and /readyz tells the truth about Redis and workers."""

from __future__ import annotations

import asyncio
import ssl
import uuid
import warnings

import httpx
import pytest
import redis.asyncio

from gateway.codec import SealedCodec
from gateway.health import FAILURE_CACHE_SECONDS, Readiness
from security.keystore import KeyRing
from tests.integration.conftest import Gateway

pytestmark = pytest.mark.integration


def test_healthz_answers_over_https(gateway_server: Gateway) -> None:
    """/healthz is 200 over HTTPS verified against the CA."""
    with gateway_server.client() as client:
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_200_when_redis_and_a_worker_answer(gateway_server: Gateway) -> None:
    """/readyz reports both checks ok when the worker answers system.ping."""
    with gateway_server.client() as client:
        response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"redis": "ok", "workers": "ok"}


def test_gateway_refuses_plain_http(gateway_server: Gateway) -> None:
    """Plain HTTP to the gateway port never gets an HTTP answer."""
    plain = gateway_server.url.replace("https://", "http://")
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{plain}/healthz", timeout=5)


def test_gateway_refuses_tls_1_1(gateway_server: Gateway) -> None:
    """A client limited to TLS 1.1 cannot complete a handshake with the gateway."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = ssl.create_default_context(cafile=str(gateway_server.ca_file))
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{gateway_server.url}/healthz", verify=ctx, timeout=5)


async def test_readiness_names_workers_when_nobody_answers(
    async_redis: redis.asyncio.Redis, keyring: KeyRing
) -> None:
    """With no worker on the queue, readiness says the worker check failed and why."""
    readiness = Readiness(
        async_redis,
        SealedCodec(keyring, ttl=60),
        queue="nobody-listens",
        timeout=0.3,
        cache_seconds=0,
    )
    checks = await readiness.check()
    assert checks["redis"] == "ok"
    assert checks["workers"].startswith("no worker answered system.ping")


async def test_readiness_names_redis_when_it_is_unreachable(keyring: KeyRing) -> None:
    """With Redis unreachable, readiness names the Redis check and skips the worker one."""
    from taskgate.procs import free_port

    client = redis.asyncio.Redis(
        host="127.0.0.1", port=free_port(), ssl=True, socket_connect_timeout=0.5
    )
    readiness = Readiness(
        client, SealedCodec(keyring, ttl=60), queue="q", timeout=0.5, cache_seconds=0
    )
    try:
        checks = await readiness.check()
    finally:
        await client.aclose()
    assert checks["redis"].startswith("unreachable over TLS")
    assert checks["workers"] == "not checked"


async def test_concurrent_probes_share_one_ping_and_a_failure_is_believed_briefly(
    async_redis: redis.asyncio.Redis, keyring: KeyRing
) -> None:
    """20 probes at once, then 20 more within the failure cache, queue a single ping: an
    unauthenticated flood of /readyz cannot make the gateway queue work."""
    queue = f"nobody-listens-{uuid.uuid4().hex[:8]}"
    readiness = Readiness(
        async_redis, SealedCodec(keyring, ttl=60), queue=queue, timeout=0.3, cache_seconds=0
    )
    first = await asyncio.gather(*(readiness.check() for _ in range(20)))
    again = await asyncio.gather(*(readiness.check() for _ in range(20)))
    assert await async_redis.llen(queue) == 1
    outcomes = {checks["workers"] for checks in first + again}
    assert len(outcomes) == 1
    assert next(iter(outcomes)).startswith("no worker answered")
    await asyncio.sleep(FAILURE_CACHE_SECONDS + 0.1)
    await readiness.check()
    assert await async_redis.llen(queue) == 2
    await async_redis.delete(queue)
