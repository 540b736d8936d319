"""Private stacks for tests that kill or restart a worker or Redis, or need other tasks.

The session fixtures (``tls_redis``, ``celery_worker``, ``gateway_server``) are shared by
every test, so nothing may kill them. A :class:`PrivateStack` has its own TLS redis-server
(own port, own data folder, append-only file on), its own gateway and as many workers as a
test starts, all with the session's certificates, keys and admin token, and the timings
and task modules the test module asks for. Test modules build one with
:func:`start_stack` from a module-scoped fixture.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis

from certs.material import CertPaths
from gateway.clients import ClientRegistry
from security.audit import iter_records
from security.keystore import load_keys
from taskgate.procs import Child, free_port, start_child, taskgate_argv
from taskgate.redis_server import RedisServer, start_redis
from tests.conftest import dump_acl_log, for_worker, register_log
from tests.integration.conftest import ApiClient, Gateway
from workers.wire import decode_record, task_key

__all__ = [
    "DEMO_MODULES",
    "FAST_SWEEP",
    "RELIABILITY_MODULES",
    "SHORT_TIMINGS",
    "PrivateStack",
    "SmtpSink",
    "running",
    "stack_with_gateway",
    "start_stack",
    "wait_for",
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
FINAL_STATES = frozenset({"succeeded", "failed", "dead_lettered", "revoked"})


def wait_for(check: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g}s")
        time.sleep(interval)


@dataclass
class SmtpSink:
    """The local SMTP sink as a child process, with the password it accepts."""

    child: Child
    port: int
    password: str
    maildir: Path

    def messages(self) -> list[Path]:
        return sorted(self.maildir.glob("*.eml")) if self.maildir.exists() else []


@dataclass
class PrivateStack:
    """One test module's own Redis, gateway, workers (and SMTP sink, if started)."""

    folder: Path
    pki: CertPaths
    admin_token: str
    env: dict[str, str]
    redis: RedisServer
    side_effects: Path
    gateway: Gateway | None = None
    workers: list[Child] = field(default_factory=list)
    others: list[Child] = field(default_factory=list)
    smtp: SmtpSink | None = None
    appendfsync: str = "everysec"
    _serial: int = 0

    # --- processes -------------------------------------------------------------------

    def _log(self, name: str) -> Path:
        self._serial += 1
        return self.folder / "logs" / f"{name}-{self._serial}.log"

    def start_worker(self, concurrency: int = 1) -> Child:
        """Start a `taskgate worker` and wait until it consumes."""
        child = start_child(
            "worker",
            taskgate_argv("worker", "--concurrency", str(concurrency), "--loglevel", "INFO"),
            log_path=self._log("worker"),
            env=for_worker(self.env),
        )
        register_log(child)
        self.workers.append(child)
        self._wait_alive(child, lambda: "ready." in child.log_tail(400), 60, "starting")
        return child

    def kill_worker(self, child: Child) -> None:
        """kill -9 the whole worker: the main process and its pool, no chance to clean up."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.process.wait(timeout=10)
        child.stop()  # reaps nothing more; marks it stopped

    def stop_workers(self) -> None:
        """Warm shutdown: SIGTERM to each main process only, so running tasks finish and
        are acknowledged (``Child.stop`` signals the whole group, pool processes too)."""
        for child in self.workers:
            if child.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.process.wait(timeout=20)
            child.stop(timeout=5)
        self.workers.clear()

    def start_gateway(self) -> Gateway:
        """Start the gateway over HTTPS; ready once /healthz answers (no worker needed)."""
        port = free_port()
        child = start_child(
            "gateway",
            taskgate_argv("serve", "--port", str(port), "--log-level", "warning"),
            log_path=self._log("gateway"),
            env=self.env,
        )
        register_log(child)
        self.others.append(child)
        gateway = Gateway(child=child, url=f"https://localhost:{port}", ca_file=self.pki.ca)

        def healthy() -> bool:
            try:
                with gateway.client() as http:
                    return http.get("/healthz").status_code == 200
            except httpx.HTTPError:
                return False

        self._wait_alive(child, healthy, 60, "waiting for /healthz")
        self.gateway = gateway
        return gateway

    def start_smtp_sink(self) -> SmtpSink:
        """The SMTP sink as `taskgate up` starts it (STARTTLS, AUTH with one password)."""
        port = free_port()
        password = secrets.token_urlsafe(24)
        maildir = self.folder / "mail"
        env = dict(self.env)
        env["TASKGATE_SMTP_SINK_PASSWORD_SHA256"] = hashlib.sha256(password.encode()).hexdigest()
        argv = [sys.executable, "-m", "taskgate.smtp_sink", "--host", "127.0.0.1"]
        argv += ["--port", str(port), "--maildir", str(maildir)]
        argv += ["--cert", str(self.pki.cert("https")), "--key", str(self.pki.key("https"))]
        child = start_child("smtp", argv, log_path=self._log("smtp"), env=env)
        register_log(child)
        self.others.append(child)
        self._wait_alive(child, lambda: "listening" in child.log_tail(5), 20, "starting")
        self.env.update({"TASKGATE_SMTP_HOST": "127.0.0.1", "TASKGATE_SMTP_PORT": str(port)})
        self.smtp = SmtpSink(child=child, port=port, password=password, maildir=maildir)
        return self.smtp

    def restart_redis(self, down_for: float = 1.0, *, kill: bool = False) -> None:
        """SIGTERM (or with ``kill``, kill -9) redis-server, stay down ``down_for`` s, start
        it on the same port and data (its append-only file)."""
        self.stop_redis(kill=kill)
        time.sleep(down_for)
        self.start_redis_again()

    def stop_redis(self, *, kill: bool = False) -> None:
        """SIGTERM redis-server, or with ``kill`` kill -9 it (no chance to write anything)."""
        dump_acl_log(self.redis)
        if kill:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.redis.child.pid, signal.SIGKILL)
            self.redis.child.process.wait(timeout=10)
        self.redis.stop()

    def start_redis_again(self) -> None:
        """Start redis-server on the port and data (append-only file) it had."""
        self.redis = start_redis(
            self.pki,
            self.redis.data_dir,
            port=self.redis.port,
            harness=True,
            appendfsync=self.appendfsync,
        )
        register_log(self.redis.child)

    def stop(self) -> None:
        self.stop_workers()
        for child in self.others:
            child.stop()
        with contextlib.suppress(Exception):  # a test may have stopped Redis already
            dump_acl_log(self.redis)
        self.redis.stop()

    @staticmethod
    def _wait_alive(child: Child, check: Callable[[], Any], timeout: float, what: str) -> None:
        def ready() -> bool:
            if not child.alive():
                raise AssertionError(f"{child.name} exited while {what}:\n{child.log_tail()}")
            return bool(check())

        try:
            wait_for(ready, timeout=timeout, what=f"{child.name} {what}", interval=0.2)
        except AssertionError:
            child.stop()
            raise

    # --- clients ---------------------------------------------------------------------

    def redis_client(self) -> Redis:
        return self.redis.tls.client()

    def admin_http(self) -> httpx.Client:
        if self.gateway is None:
            raise RuntimeError("start the gateway first")
        return self.gateway.client(headers={"Authorization": f"Bearer {self.admin_token}"})

    def new_client(
        self,
        scopes: str = "tasks:submit:* tasks:read",
        *,
        rate_limit: str = "100000/minute",
        max_queued: int = 100_000,
    ) -> ApiClient:
        """Register an API client directly in this stack's registry."""
        if self.gateway is None:
            raise RuntimeError("start the gateway first")

        async def create() -> tuple[str, str]:
            client = self.redis.tls.async_client()
            try:
                keys = load_keys(Path(self.env["TASKGATE_STATE_DIR"]) / "keys", role="gateway")
                record, secret = await ClientRegistry(client, keys.state).create(
                    f"rel-{uuid.uuid4().hex[:6]}",
                    scopes,
                    rate_limit=rate_limit,
                    max_queued=max_queued,
                )
            finally:
                await client.aclose()
            return record.client_id, secret

        client_id, secret = asyncio.run(create())
        return ApiClient(client_id, secret, self.gateway)

    # --- observations ----------------------------------------------------------------

    def record(self, task_id: str) -> dict[str, str]:
        """The task's record (``tg:task:{id}``) as text."""
        with self.redis_client() as client:
            return decode_record(client.hgetall(task_key(task_id)))

    def wait_state(
        self, task_id: str, states: frozenset[str] = FINAL_STATES, timeout: float = 30
    ) -> dict[str, str]:
        """Wait until the task record's state is one of ``states``; return the record."""
        return dict(
            wait_for(
                lambda: (r := self.record(task_id)).get("state") in states and r,
                timeout=timeout,
                what=f"task {task_id} reaching {sorted(states)}",
            )
        )

    def effects(self, task_id: str) -> list[str]:
        """Lines of the task's side-effect file (one per side effect)."""
        return _lines(self.side_effects / task_id)

    def starts(self, task_id: str) -> list[list[str]]:
        """Runs that began: ``[pid, attempt, start time, eta or '-']`` each."""
        return [line.split() for line in _lines(self.side_effects / f"{task_id}.starts")]

    def vault_keys(self, task_id: str) -> list[bytes]:
        """Where the task's sealed secrets are stored (``tg:vault:{id}:*``)."""
        with self.redis_client() as client:
            return list(client.scan_iter(match=f"tg:vault:{task_id}:*"))

    def audited(self, target: str, action: str) -> list[tuple[str, str]]:
        """(actor, outcome) of every audit record about ``target`` with ``action``."""
        with self.redis_client() as client:
            return [
                (entry.record.actor, entry.record.outcome)
                for entry in iter_records(client)
                if entry.record.target == target and entry.record.action == action
            ]

    def log_files(self) -> list[Path]:
        return sorted((self.folder / "logs").glob("*.log"))


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


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


@contextlib.contextmanager
def running(stack: PrivateStack) -> Iterator[PrivateStack]:
    """Stop every worker the block started, however it ends."""
    try:
        yield stack
    finally:
        stack.stop_workers()
