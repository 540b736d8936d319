"""Session-scoped real servers for every test that needs them.

- ``pki``: a throwaway CA with every certificate the stack uses (``certs.material``).
- ``tls_redis``: a TLS-only ``redis-server`` (plain port off, client certificates required).
- ``redis_client`` / ``async_redis``: clients over mTLS, database flushed before each test.
- ``stack_env``: the ``TASKGATE_*`` environment for child processes pointing at ``tls_redis``;
  ``tests.support.processes.for_worker`` turns it into a worker's, on its own folder
  (``<session>/roles/worker``: worker certificates and key bundle only, as `taskgate up`
  gives it).
- ``celery_worker`` / ``gateway_server`` (in ``tests/integration/conftest.py``): real processes.

Every started server registers its log (``tests.support.logs``); a failing test shows the
tails of those logs. Helpers that are not fixtures live in ``tests/support/``.
There is no skip when ``redis-server`` is missing: the run fails and says how to install it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio

from certs.material import CertPaths, init_certs
from security.keystore import KeyRing, init_keys, load_keys
from security.passwords import hash_admin_token, new_admin_token
from taskgate.devstack.redis_server import INSTALL_HINT, RedisServer, start_redis
from taskgate.devstack.role_dirs import prepare_role_dir
from tests.support.logs import register_log, registered_logs
from tests.support.redis_server import dump_acl_log


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    logs = registered_logs()
    if report.failed and logs:
        for child in logs:
            report.sections.append((f"log of {child.name} ({child.log_path})", child.log_tail(80)))
    return report


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private state folder for the whole test session."""
    path = tmp_path_factory.mktemp("taskgate-state")
    path.chmod(0o700)
    return path


@pytest.fixture(scope="session")
def pki(session_dir: Path) -> CertPaths:
    """A throwaway CA and every certificate (redis, gateway/worker clients, https)."""
    folder = session_dir / "certs"
    init_certs(folder)
    return CertPaths(folder)


@pytest.fixture(scope="session")
def keyring(session_dir: Path) -> KeyRing:
    """The session's key ring (gateway role) in ``<session_dir>/keys``."""
    init_keys(session_dir / "keys")
    return load_keys(session_dir / "keys", role="gateway")


@pytest.fixture(scope="session")
def worker_dir(keyring: KeyRing, pki: CertPaths, session_dir: Path) -> Path:
    """The worker's own state folder: its certificates and its key bundle, nothing else."""
    return prepare_role_dir(session_dir, "worker")


@pytest.fixture(scope="session")
def worker_keys(worker_dir: Path) -> KeyRing:
    """The keys a worker holds, loaded from its bundle: no signing private key."""
    return load_keys(worker_dir / "keys", role="worker")


@pytest.fixture(scope="session")
def tls_redis(pki: CertPaths, session_dir: Path) -> Iterator[RedisServer]:
    """A real TLS-only redis-server on a free loopback port, for the whole session."""
    if shutil.which("redis-server") is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    server = start_redis(pki, session_dir / "redis", harness=True)
    register_log(server.child)
    try:
        yield server
    finally:
        dump_acl_log(server)
        server.stop()


@pytest.fixture
def redis_client(tls_redis: RedisServer) -> Iterator[redis.Redis]:
    """A sync client over mTLS; the database is flushed before each test."""
    client = tls_redis.tls.client()
    client.flushdb()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
async def async_redis(tls_redis: RedisServer) -> AsyncIterator[redis.asyncio.Redis]:
    """An asyncio client over mTLS; the database is flushed before each test."""
    client = tls_redis.tls.async_client()
    await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture(scope="session")
def admin_token(session_dir: Path) -> str:
    """The session's admin token; only its hash is on disk (what the gateway reads)."""
    token = new_admin_token()
    path = session_dir / "admin-token.sha256"
    path.write_text(hash_admin_token(token))
    path.chmod(0o600)
    return token


@pytest.fixture(scope="session")
def stack_env(
    tls_redis: RedisServer,
    pki: CertPaths,
    keyring: KeyRing,
    admin_token: str,
    session_dir: Path,
    worker_dir: Path,
) -> dict[str, str]:
    """Environment for taskgate child processes pointing at the session's TLS Redis."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKGATE_")}
    env.update(
        {
            "TASKGATE_STATE_DIR": str(session_dir),
            "TASKGATE_REDIS_URL": tls_redis.url,
            "TASKGATE_CA_FILE": str(pki.ca),
            "TASKGATE_TASK_MODULES": '["tests.integration.sample_tasks"]',
            "TASKGATE_TEST_SIDE_EFFECTS": str(session_dir / "side-effects"),
            "PYTHONUNBUFFERED": "1",
            # Tests flush Redis between them, which is exactly what anchors catch: the
            # shared stack takes none (the audit tests' private stacks do).
            "TASKGATE_AUDIT_ANCHOR_INTERVAL": "0",
        }
    )
    return env
