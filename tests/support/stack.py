"""One private stack: its own TLS redis-server, gateway, workers and SMTP sink, started,
stopped and observed by a test (built by ``tests.support.stacks``)."""

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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from redis import Redis

from certs.material import CertPaths
from gateway.stores.clients import ClientRegistry
from security.audit import iter_records
from security.keystore import load_keys
from taskgate.devstack.procs import Child, free_port, start_child, taskgate_argv
from taskgate.devstack.redis_server import RedisServer, start_redis
from tests.support.gateways import ApiClient, Gateway
from tests.support.logs import register_log
from tests.support.processes import for_worker, wait_for
from tests.support.redis_server import dump_acl_log
from workers.contract.wire import decode_record, task_key

__all__ = ["FINAL_STATES", "PrivateStack", "SmtpSink"]

FINAL_STATES = frozenset({"succeeded", "failed", "dead_lettered", "revoked"})


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

    def start_smtp_sink(self, *, reply_delay: float = 0.0) -> SmtpSink:
        """The SMTP sink as `taskgate up` starts it (STARTTLS, AUTH with one password);
        ``reply_delay``: seconds it waits after storing a message before answering."""
        port = free_port()
        password = secrets.token_urlsafe(24)
        maildir = self.folder / "mail"
        env = dict(self.env)
        env["TASKGATE_SMTP_SINK_PASSWORD_SHA256"] = hashlib.sha256(password.encode()).hexdigest()
        argv = [sys.executable, "-m", "taskgate.devstack.smtp_sink", "--host", "127.0.0.1"]
        argv += ["--port", str(port), "--maildir", str(maildir)]
        argv += ["--cert", str(self.pki.cert("https")), "--key", str(self.pki.key("https"))]
        argv += ["--reply-delay", str(reply_delay)]
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
