"""Private stacks for tests that kill or restart a worker or Redis, or need other tasks.

The session fixtures (``tls_redis``, ``celery_worker``, ``gateway_server``) are shared by
every test, so nothing may kill them. A :class:`PrivateStack` has its own TLS redis-server
(own port, own data folder, append-only file on), its own gateway and as many workers as a
test starts, all with the session's certificates, keys and admin token, and the timings
and task modules the test module asks for. Test modules build one with
:func:`start_stack`, :func:`stack_with_gateway`, or the module-scoped fixture that
:func:`private_stack` makes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from certs.material import CertPaths
from taskgate.devstack.redis_server import start_redis
from tests.support.logs import register_log
from tests.support.stack import FINAL_STATES, PrivateStack, SmtpSink

__all__ = [
    "DEMO_MODULES",
    "FAST_SWEEP",
    "FINAL_STATES",
    "RELIABILITY_MODULES",
    "SHORT_TIMINGS",
    "PrivateStack",
    "SmtpSink",
    "crash_stack",
    "private_stack",
    "running",
    "stack_with_gateway",
    "start_stack",
]

RELIABILITY_MODULES = '["tests.integration.reliability_tasks"]'
DEMO_MODULES = '["workers.demo.email","workers.demo.report","workers.demo.image"]'
# A visibility timeout of 10 + 4 + 1 = 15 s: an unacknowledged message of a killed worker
# is handed out again within seconds, not the production default of 20 minutes. The retry
# delays of the test tasks stay within TASKGATE_MAX_RETRY_DELAY (4 s).
SHORT_TIMINGS = {
    "TASKGATE_TASK_TIME_LIMIT": "10",
    "TASKGATE_TASK_SOFT_TIME_LIMIT": "8",
    "TASKGATE_MAX_RETRY_DELAY": "4",
    "TASKGATE_VISIBILITY_MARGIN": "1",
}
# The lost-message sweeper every second, re-queuing after 5 s missing (not 30 s / 150 s).
FAST_SWEEP = {"TASKGATE_SWEEP_INTERVAL": "1", "TASKGATE_SWEEP_GRACE": "5"}


def start_stack(
    folder: Path,
    *,
    pki: CertPaths,
    stack_env: dict[str, str],
    admin_token: str,
    modules: str,
    timings: dict[str, str] | None = None,
    appendfsync: str = "everysec",
) -> PrivateStack:
    """A new Redis in ``folder`` (its append-only file synced per ``appendfsync``) and the
    environment for this stack's processes."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    server = start_redis(pki, folder / "redis", harness=True, appendfsync=appendfsync)
    register_log(server.child)
    side_effects = folder / "side-effects"
    env = dict(stack_env)
    env.update(timings or {})
    env.update(
        {
            "TASKGATE_REDIS_URL": server.url,
            "TASKGATE_TASK_MODULES": modules,
            "TASKGATE_TEST_SIDE_EFFECTS": str(side_effects),
        }
    )
    return PrivateStack(
        folder=folder,
        pki=pki,
        admin_token=admin_token,
        env=env,
        redis=server,
        side_effects=side_effects,
        appendfsync=appendfsync,
    )


@contextlib.contextmanager
def stack_with_gateway(
    folder: Path,
    *,
    pki: CertPaths,
    stack_env: dict[str, str],
    admin_token: str,
    modules: str,
    timings: dict[str, str] | None = None,
) -> Iterator[PrivateStack]:
    """:func:`start_stack` with its gateway started; everything stopped on the way out."""
    stack = start_stack(
        folder,
        pki=pki,
        stack_env=stack_env,
        admin_token=admin_token,
        modules=modules,
        timings=timings,
    )
    try:
        stack.start_gateway()
        yield stack
    finally:
        stack.stop()


def private_stack(
    name: str,
    *,
    modules: str,
    timings: dict[str, str] | None = None,
    worker_concurrency: int = 0,
) -> Any:
    """A module-scoped fixture: :func:`stack_with_gateway` in a folder named ``name``,
    with one worker of ``worker_concurrency`` started if it is not 0 (otherwise each test
    starts its own). Assign it to a module-level name to use it."""

    @pytest.fixture(scope="module")
    def fixture(
        tmp_path_factory: pytest.TempPathFactory,
        pki: CertPaths,
        stack_env: dict[str, str],
        admin_token: str,
    ) -> Iterator[PrivateStack]:
        with stack_with_gateway(
            tmp_path_factory.mktemp(name),
            pki=pki,
            stack_env=stack_env,
            admin_token=admin_token,
            modules=modules,
            timings=timings,
        ) as stack:
            if worker_concurrency:
                stack.start_worker(concurrency=worker_concurrency)
            yield stack

    return fixture


def crash_stack(name: str, *, modules: str, smtp_reply_delay: float | None = None) -> Any:
    """A module-scoped fixture for the Redis crash tests: Redis syncing every write
    (``appendfsync always``), the SMTP sink unless ``smtp_reply_delay`` is None (answering
    each message that many seconds after storing it), two workers of two processes each
    and the gateway, with short timings and a fast sweeper. Assign it to a module-level
    name to use it."""

    @pytest.fixture(scope="module")
    def fixture(
        tmp_path_factory: pytest.TempPathFactory,
        pki: CertPaths,
        stack_env: dict[str, str],
        admin_token: str,
    ) -> Iterator[PrivateStack]:
        stack = start_stack(
            tmp_path_factory.mktemp(name),
            pki=pki,
            stack_env=stack_env,
            admin_token=admin_token,
            modules=modules,
            timings={**SHORT_TIMINGS, **FAST_SWEEP},
            appendfsync="always",
        )
        try:
            if smtp_reply_delay is not None:  # before the workers: it adds their SMTP settings
                stack.start_smtp_sink(reply_delay=smtp_reply_delay)
            stack.start_worker(concurrency=2)
            stack.start_worker(concurrency=2)
            stack.start_gateway()
            yield stack
        finally:
            stack.stop()

    return fixture


@contextlib.contextmanager
def running(stack: PrivateStack) -> Iterator[PrivateStack]:
    """Stop every worker the block started, however it ends."""
    try:
        yield stack
    finally:
        stack.stop_workers()
