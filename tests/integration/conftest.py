"""Real processes for integration tests: a Celery worker and the HTTPS gateway."""

from __future__ import annotations

import asyncio
import ssl
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from certs.material import CertPaths
from gateway.clients import ClientRegistry
from gateway.operators import OperatorRegistry
from security.keystore import KeyRing
from taskgate.procs import Child, free_port, start_child, taskgate_argv
from taskgate.redis_server import RedisServer
from tests.conftest import for_worker, register_log


@dataclass
class Gateway:
    """A running gateway subprocess and an HTTPS client that trusts the test CA."""

    child: Child
    url: str
    ca_file: Path

    def client(self, **kwargs: object) -> httpx.Client:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        return httpx.Client(base_url=self.url, verify=ctx, timeout=10.0, **kwargs)  # type: ignore[arg-type]


def _wait_for(child: Child, check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            pytest.fail(f"{child.name} exited while {what}:\n{child.log_tail()}", pytrace=False)
        if callable(check) and check():
            return
        time.sleep(0.2)
    pytest.fail(
        f"{child.name} was not ready after {timeout}s ({what}):\n{child.log_tail()}", pytrace=False
    )


@pytest.fixture
def worker_env(stack_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The session stack's TASKGATE_* settings in this process's environment, so a test can
    build a worker's Celery app (``WorkerSettings()``) in-process."""
    for key, value in for_worker(stack_env).items():
        if key.startswith("TASKGATE_"):
            monkeypatch.setenv(key, value)


@pytest.fixture(scope="session")
def celery_worker(stack_env: dict[str, str], session_dir: Path) -> Iterator[Child]:
    """One real `taskgate worker` process (prefork, concurrency 2) for the session."""
    child = start_child(
        "worker",
        taskgate_argv("worker", "--concurrency", "2", "--loglevel", "INFO"),
        log_path=session_dir / "logs" / "worker.log",
        env=for_worker(stack_env),
    )
    register_log(child)
    _wait_for(child, lambda: "ready." in child.log_path.read_text(errors="replace"), 60, "starting")
    try:
        yield child
    finally:
        child.stop()


@pytest.fixture(scope="session")
def gateway_server(
    stack_env: dict[str, str], session_dir: Path, pki: CertPaths, celery_worker: Child
) -> Iterator[Gateway]:
    """The real gateway under uvicorn over HTTPS, ready (Redis and a worker answer)."""
    port = free_port()
    child = start_child(
        "gateway",
        taskgate_argv("serve", "--port", str(port), "--log-level", "warning"),
        log_path=session_dir / "logs" / "gateway.log",
        env=stack_env,
    )
    register_log(child)
    gateway = Gateway(child=child, url=f"https://localhost:{port}", ca_file=pki.ca)

    def ready() -> bool:
        try:
            with gateway.client() as client:
                return client.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    _wait_for(child, ready, 60, "waiting for /readyz")
    try:
        yield gateway
    finally:
        child.stop()


@dataclass
class ApiClient:
    """A registered client with its credentials, able to fetch tokens from the gateway."""

    client_id: str
    secret: str
    gateway: Gateway

    def token(self, scope: str | None = None) -> str:
        data = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self.secret,
        }
        if scope:
            data["scope"] = scope
        with self.gateway.client() as http:
            response = http.post("/v1/token", data=data)
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def http(self, scope: str | None = None) -> httpx.Client:
        return self.gateway.client(headers={"Authorization": f"Bearer {self.token(scope)}"})


@pytest.fixture
def make_operator(tls_redis: RedisServer, keyring: KeyRing) -> Any:
    """Add a named operator (``gateway.operators``) and return ``(name, credential)``."""

    def make(role: str = "admin", name: str | None = None) -> tuple[str, str]:
        wanted = name or f"op-{uuid.uuid4().hex[:8]}"

        async def add() -> str:
            redis_async = tls_redis.tls.async_client()
            try:
                return (await OperatorRegistry(redis_async, keyring.state).add(wanted, role))[1]
            finally:
                await redis_async.aclose()

        return wanted, asyncio.run(add())

    return make


@pytest.fixture
def make_client(gateway_server: Gateway, tls_redis: RedisServer, keyring: KeyRing) -> Any:
    """Register a client in the registry (over mTLS) and return its credentials."""

    def make(scopes: str = "tasks:submit:* tasks:read", **options: Any) -> ApiClient:
        async def create() -> tuple[str, str]:
            redis_async = tls_redis.tls.async_client()
            try:
                client, secret = await ClientRegistry(redis_async, keyring.state).create(
                    f"test-{uuid.uuid4().hex[:6]}", scopes, **options
                )
            finally:
                await redis_async.aclose()
            return client.client_id, secret

        client_id, secret = asyncio.run(create())
        return ApiClient(client_id, secret, gateway_server)

    return make
