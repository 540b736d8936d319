"""Real processes for integration tests: a Celery worker and the HTTPS gateway (the shared
one, and one with the web console on), and API clients and operators registered in it;
the client registry itself over the flushed test database."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio

from certs.material import CertPaths
from gateway.stores.clients import ClientRegistry
from gateway.stores.operators import OperatorRegistry
from security.keyexport import export_keys
from security.keyrotation import BUNDLE_ORDER
from security.keystore import KeyRing
from taskgate.devstack.procs import Child, free_port, start_child, taskgate_argv
from taskgate.devstack.redis_server import RedisServer
from tests.support.console import IDLE_TIMEOUT, KeyHost, start_console_gateway
from tests.support.gateways import ApiClient, Gateway
from tests.support.logs import register_log
from tests.support.processes import for_worker, wait_child


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
    wait_child(
        child, lambda: "ready." in child.log_path.read_text(errors="replace"), 60, "starting"
    )
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

    wait_child(child, ready, 60, "waiting for /readyz")
    try:
        yield gateway
    finally:
        child.stop()


@pytest.fixture
def make_operator(tls_redis: RedisServer, keyring: KeyRing) -> Any:
    """Add a named operator (``gateway.stores.operators``) and return ``(name, credential)``."""

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


@pytest.fixture
def registry(async_redis: redis.asyncio.Redis, keyring: KeyRing) -> ClientRegistry:
    """A client registry over the flushed test database (the client-registry tests)."""
    return ClientRegistry(async_redis, keyring.state)


@pytest.fixture(scope="module")
def console_gateway(
    stack_env: dict[str, str], session_dir: Path, pki: CertPaths, celery_worker: Child
) -> Iterator[Gateway]:
    """A second gateway process with TASKGATE_CONSOLE=true and a short idle timeout."""
    gateway, child = start_console_gateway(
        stack_env,
        session_dir,
        pki,
        "console-gateway",
        TASKGATE_CONSOLE_IDLE_TIMEOUT=str(IDLE_TIMEOUT),
    )
    try:
        yield gateway
    finally:
        child.stop()


@pytest.fixture(scope="module")
def key_host_gateway(
    stack_env: dict[str, str],
    session_dir: Path,
    pki: CertPaths,
    keyring: KeyRing,
    celery_worker: Child,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[KeyHost]:
    """A console gateway run on a key host of its own: a copy of the session's keys folder
    (so rotating there never touches the keys the session's processes load) and every
    role's bundle exported from it, named by TASKGATE_CONSOLE_KEY_HOST_DIR and _ROLES_DIR."""
    host = tmp_path_factory.mktemp("key-host")
    host.chmod(0o700)
    keys, roles = host / "keys", host / "roles"
    shutil.copytree(session_dir / "keys", keys)
    for role in BUNDLE_ORDER:
        export_keys(keys, roles / role / "keys", role=role)
    gateway, child = start_console_gateway(
        stack_env,
        session_dir,
        pki,
        "key-host-gateway",
        TASKGATE_CONSOLE_KEY_HOST_DIR=str(keys),
        TASKGATE_CONSOLE_ROLES_DIR=str(roles),
    )
    try:
        yield KeyHost(gateway=gateway, keys=keys, roles=roles)
    finally:
        child.stop()
