"""After a real task over TLS, neither the payload nor the secret is readable anywhere at rest."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import redis

from security.keystore import KeyRing
from taskgate.devstack.procs import Child
from taskgate.devstack.redis_server import RedisServer
from tests.support.messages import submit, wait_audit, wait_result

pytestmark = pytest.mark.integration


def _every_key_dumped(client: redis.Redis) -> bytes:
    dumps = []
    for key in client.scan_iter(count=1000):
        dumps.append(key)
        dumped = client.dump(key)
        if dumped:
            dumps.append(dumped)
    return b"\n".join(dumps)


def _files(*folders: Path) -> list[Path]:
    return [p for folder in folders if folder.exists() for p in folder.rglob("*") if p.is_file()]


def _read(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except FileNotFoundError:  # a rewrite's temporary file, renamed away meanwhile
        return b""


def _wait_for_rewrite(client: redis.Redis) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        info = client.info("persistence")
        if not info.get("aof_rewrite_in_progress") and not info.get("aof_rewrite_scheduled"):
            return
        time.sleep(0.05)
    raise AssertionError("the AOF rewrite did not finish")


def test_canary_payload_and_secret_are_nowhere_in_redis_or_logs(
    celery_worker: Child,
    tls_redis: RedisServer,
    redis_client: redis.Redis,
    keyring: KeyRing,
    session_dir: Path,
) -> None:
    """DUMP of every key, the append-only file and every log hold neither canary."""
    payload_canary = f"canary-payload-{uuid.uuid4().hex}"
    secret_canary = f"canary-secret-{uuid.uuid4().hex}"
    task_id = submit(
        redis_client,
        keyring,
        "test.touch",
        {"note": payload_canary, "token": secret_canary},
        secret_fields=("token",),
    )
    doc = wait_result(redis_client, keyring, task_id)
    assert doc["status"] == "SUCCESS"
    redis_client.bgrewriteaof()  # also scan what the rewrite writes out
    _wait_for_rewrite(redis_client)
    everything = _every_key_dumped(redis_client)
    # The scan can find things: the task id is routing metadata, stored in the clear.
    assert task_id.encode() in everything
    files = _files(tls_redis.data_dir, session_dir / "logs")
    assert any(f.name.endswith(".aof") for f in files)
    assert any(f.name == "worker.log" for f in files)
    for canary in (payload_canary, secret_canary):
        needle = canary.encode()
        assert needle not in everything, f"{canary[:14]} found in a Redis key"
        for file in files:
            assert needle not in _read(file), f"{canary[:14]} found in {file}"


@pytest.mark.parametrize("task", ["test.retry_quoting_input", "test.fail_quoting_input"])
def test_an_exception_message_quoting_the_payload_reaches_no_log(
    celery_worker: Child,
    redis_client: redis.Redis,
    keyring: KeyRing,
    session_dir: Path,
    task: str,
) -> None:
    """A retried or failed task's exception text (here quoting the payload) is logged and
    stored as its type's name only."""
    canary = f"canary-host-{uuid.uuid4().hex}.example"
    task_id = submit(redis_client, keyring, task, {"note": canary})
    outcome = "task.succeeded" if task == "test.retry_quoting_input" else "task.dead_lettered"
    wait_audit(redis_client, task_id, outcome, timeout=30)
    time.sleep(0.5)  # the worker's log lines about the outcome are written after the audit
    everything = _every_key_dumped(redis_client)
    assert canary.encode() not in everything
    for file in _files(session_dir / "logs"):
        assert canary.encode() not in _read(file), f"the payload's text found in {file}"
