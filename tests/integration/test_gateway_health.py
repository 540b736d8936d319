"""The gateway serves HTTPS only, and /readyz tells the truth about Redis and workers."""

from __future__ import annotations

import asyncio
import ssl
import time
import warnings

import httpx
import pytest
import redis.asyncio

from gateway.health import Readiness
from tests.support.gateways import Gateway
from tests.support.processes import wait_for
from workers.contract.heartbeat import WORKERS

pytestmark = pytest.mark.integration


def test_healthz_answers_over_https(gateway_server: Gateway) -> None:
    """/healthz is 200 over HTTPS verified against the CA."""
    with gateway_server.client() as client:
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_200_when_redis_answers_and_a_worker_beats(gateway_server: Gateway) -> None:
    """/readyz reports both checks ok and one live worker while the session worker beats
    (within one heartbeat interval: an earlier test may have flushed Redis)."""
    with gateway_server.client() as client:
        response = wait_for(
            lambda: (r := client.get("/readyz")).status_code == 200 and r,
            timeout=10,
            what="/readyz 200",
        )
    body = response.json()
    assert body["checks"] == {"redis": "ok", "workers": "ok"}
    assert body["live_workers"] == 1


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


async def test_readiness_names_workers_when_no_heartbeat_is_recent(
    async_redis: redis.asyncio.Redis,
) -> None:
    """With no worker heartbeat within the lapse, readiness says the worker check failed and why."""
    await async_redis.zadd(WORKERS, {"gone-host:1": time.time() - 60})
    readiness = Readiness(async_redis, lapse=2, timeout=1, cache_seconds=0, clock=_an_hour_on)
    checks = await readiness.check()
    assert checks["redis"] == "ok"
    assert checks["workers"] == "no worker heartbeat within 2s"
    assert checks["live_workers"] == 0


async def test_readiness_counts_the_workers_that_beat_within_the_lapse(
    async_redis: redis.asyncio.Redis,
) -> None:
    """Two fresh beats and one stale one: ready, with two live workers (read as of a
    moment the session worker's own beat is long past)."""
    now = _an_hour_on()
    await async_redis.zadd(WORKERS, {"a:1": now - 1, "b:2": now, "c:3": now - 30})
    readiness = Readiness(async_redis, lapse=15, timeout=1, cache_seconds=0, clock=lambda: now)
    assert await readiness.check() == {"redis": "ok", "workers": "ok", "live_workers": 2}


async def test_an_unreadable_heartbeat_set_means_not_ready(
    async_redis: redis.asyncio.Redis,
) -> None:
    """Fail closed: a heartbeat key of the wrong type is an unreadable check, not a pass."""
    await async_redis.delete(WORKERS)
    await async_redis.set(WORKERS, "not a sorted set")
    try:
        readiness = Readiness(async_redis, lapse=15, timeout=1, cache_seconds=0)
        checks = await readiness.check()
    finally:
        await async_redis.delete(WORKERS)
    assert checks["redis"] == "ok"
    assert checks["workers"] == "heartbeats unreadable (ResponseError)"


async def test_readiness_names_redis_when_it_is_unreachable() -> None:
    """With Redis unreachable, readiness names the Redis check and skips the worker one."""
    from taskgate.devstack.procs import free_port

    client = redis.asyncio.Redis(
        host="127.0.0.1", port=free_port(), ssl=True, socket_connect_timeout=0.5
    )
    readiness = Readiness(client, lapse=15, timeout=0.5, cache_seconds=0)
    try:
        checks = await readiness.check()
    finally:
        await client.aclose()
    assert checks["redis"].startswith("unreachable over TLS")
    assert checks["workers"] == "not checked"


async def test_concurrent_probes_share_one_check_and_an_outcome_is_reused_briefly(
    async_redis: redis.asyncio.Redis, redis_client: redis.Redis
) -> None:
    """20 probes at once, then 20 more within the cache, read the heartbeats once: an
    unauthenticated flood of /readyz costs Redis one ZCOUNT per cache period per process."""

    def zcounts() -> int:
        stats = redis_client.info("commandstats").get("cmdstat_zcount", {})
        return int(stats.get("calls", 0))

    readiness = Readiness(async_redis, lapse=15, timeout=1, cache_seconds=0.5)
    before = zcounts()
    first = await asyncio.gather(*(readiness.check() for _ in range(20)))
    again = await asyncio.gather(*(readiness.check() for _ in range(20)))
    assert zcounts() - before == 1
    assert len({str(sorted(checks.items())) for checks in first + again}) == 1
    await asyncio.sleep(0.6)
    await readiness.check()
    assert zcounts() - before == 2


def _an_hour_on() -> float:
    return time.time() + 3600
