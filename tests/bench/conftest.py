"""Fixtures the benchmarks share (``make bench``; see ``test_submit_bench`` and
``test_worker_bench``). The TLS Redis, certificates and keys come from ``tests/conftest.py``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest
import redis

from taskgate.devstack.redis_server import RedisServer
from tests.bench.harness import ROOT
from tests.bench.workload import TASK_MODULE


@pytest.fixture(scope="session")
def bench_env(stack_env: dict[str, str]) -> dict[str, str]:
    """The stack environment with the bench task loaded and the global queue cap lifted."""
    env = dict(stack_env)
    env.update(
        {
            "TASKGATE_TASK_MODULES": json.dumps([TASK_MODULE]),
            "TASKGATE_MAX_QUEUED_GLOBAL": "10000000",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        }
    )
    return env


@pytest.fixture(scope="session")
def plain_redis(tls_redis: RedisServer) -> Iterator[redis.Redis]:
    """A sync client for the harness itself: flushes, counters, queue lengths."""
    client = tls_redis.tls.client(socket_timeout=30)
    try:
        yield client
    finally:
        client.close()
