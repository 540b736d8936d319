"""`taskgate up`: the whole local stack in one command, stopped cleanly by Ctrl-C.

With nothing configured it creates the state folder, the dev CA and certificates,
starts a TLS-only redis-server on a free loopback port, one worker and the gateway
over HTTPS, waits until ``/readyz`` says 200, then writes ``<state>/stack.json``.
With ``TASKGATE_REDIS_URL`` set it uses that Redis instead of starting one.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from certs.material import CertPaths, init_certs
from gateway.clients import ClientRegistry
from gateway.settings import GatewaySettings
from security.config import load_settings
from security.errors import ConfigError
from security.keystore import init_keys, load_keys
from security.passwords import hash_admin_token, new_admin_token
from security.tls import RedisTLS
from taskgate.procs import Child, free_port, start_child, taskgate_argv
from taskgate.redis_server import INSTALL_HINT, RedisServer, RedisServerError, start_redis
from workers.settings import WorkerSettings

__all__ = ["Stack", "up_command"]

READY_TIMEOUT = 90.0
DEMO_MODULES = '["workers.demo.email","workers.demo.report","workers.demo.image"]'
DEMO_SCOPES = "tasks:submit:* tasks:read audit:read"


class StackError(RuntimeError):
    """The stack could not start or a part of it died."""


class Stack:
    """The processes of one local stack and how to stop them."""

    def __init__(self, state_dir: Path) -> None:
        # Absolute: redis-server changes into its data folder before reading cert paths.
        self.state_dir = state_dir.resolve()
        self.certs = CertPaths(state_dir / "certs")
        self.redis: RedisServer | None = None
        self.children: list[Child] = []
        self._stopping = False

    def env(self, redis_url: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "TASKGATE_STATE_DIR": str(self.state_dir),
                "TASKGATE_REDIS_URL": redis_url,
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def start(self, *, port: int, concurrency: int) -> dict[str, Any]:
        """Start everything and return the description written to ``stack.json``."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(0o700)
        init_certs(self.certs.folder)
        init_keys(self.state_dir / "keys")
        external = os.environ.get("TASKGATE_REDIS_URL")
        if external:
            redis_url = external
        else:
            if shutil.which("redis-server") is None:
                raise StackError(INSTALL_HINT)
            self.redis = start_redis(self.certs, self.state_dir / "redis")
            redis_url = self.redis.url
        env = self.env(redis_url)
        admin_token = self._new_admin_token()
        smtp = self._start_smtp_sink(env)
        env.setdefault("TASKGATE_TASK_MODULES", DEMO_MODULES)
        env.update({"TASKGATE_SMTP_HOST": "127.0.0.1", "TASKGATE_SMTP_PORT": str(smtp["port"])})
        # Refuse unsafe settings here, once, with exit 2 - before any child starts.
        saved = dict(os.environ)
        try:
            os.environ.update(env)
            load_settings(WorkerSettings).key_ring("worker")
            load_settings(GatewaySettings, port=port).key_ring("gateway")
        finally:
            os.environ.clear()
            os.environ.update(saved)
        logs = self.state_dir / "logs"
        worker = start_child(
            "worker",
            taskgate_argv("worker", "--concurrency", str(concurrency)),
            log_path=logs / "worker.log",
            env=env,
        )
        self.children.append(worker)
        gateway = start_child(
            "gateway",
            taskgate_argv("serve", "--port", str(port)),
            log_path=logs / "gateway.log",
            env=env,
        )
        self.children.append(gateway)
        gateway_url = f"https://localhost:{port}"
        self._wait_ready(gateway_url)
        demo_id, demo_secret = self._demo_client(redis_url)
        return {
            "gateway_url": gateway_url,
            "redis_url": redis_url,
            "ca_file": str(self.certs.ca.resolve()),
            "client_cert": str(self.certs.cert("gateway-client").resolve()),
            "client_key": str(self.certs.key("gateway-client").resolve()),
            "state_dir": str(self.state_dir.resolve()),
            "demo_client": {
                "client_id": demo_id,
                "client_secret": demo_secret,
                "scopes": DEMO_SCOPES,
            },
            "admin_token": admin_token,
            "smtp": smtp,
            "pids": {
                "up": os.getpid(),
                **({"redis": self.redis.child.pid} if self.redis else {}),
                **{child.name: child.pid for child in self.children},
            },
            "logs": {
                **({"redis": str(self.redis.child.log_path)} if self.redis else {}),
                **{child.name: str(child.log_path) for child in self.children},
            },
        }

    def _new_admin_token(self) -> str:
        """A fresh admin token per run; only its hash is kept on disk (mode 0600)."""
        token = new_admin_token()
        path = self.state_dir / "admin-token.sha256"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(hash_admin_token(token) + "\n")
        return token

    def _start_smtp_sink(self, env: dict[str, str]) -> dict[str, Any]:
        """The local SMTP sink (STARTTLS, AUTH) that email.send delivers to."""
        port = free_port()
        password = secrets.token_urlsafe(24)
        maildir = self.state_dir / "mail"
        sink_env = dict(env)
        sink_env["TASKGATE_SMTP_SINK_PASSWORD_SHA256"] = hashlib.sha256(
            password.encode()
        ).hexdigest()
        child = start_child(
            "smtp",
            [
                sys.executable,
                "-m",
                "taskgate.smtp_sink",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--cert",
                str(self.certs.cert("https")),
                "--key",
                str(self.certs.key("https")),
                "--maildir",
                str(maildir),
            ],
            log_path=self.state_dir / "logs" / "smtp.log",
            env=sink_env,
        )
        self.children.append(child)
        deadline = time.monotonic() + 20
        while "listening" not in child.log_tail(5):
            if not child.alive() or time.monotonic() > deadline:
                raise StackError(f"the SMTP sink did not start:\n{child.log_tail(20)}")
            time.sleep(0.1)
        return {
            "host": "127.0.0.1",
            "port": port,
            "username": "taskgate",
            "password": password,
            "maildir": str(maildir.resolve()),
        }

    def _demo_client(self, redis_url: str) -> tuple[str, str]:
        """Register a demo client (all demo tasks, read, audit:read); its secret is shown once."""
        tls = RedisTLS(
            redis_url,
            self.certs.ca,
            self.certs.cert("gateway-client"),
            self.certs.key("gateway-client"),
        )

        async def create() -> tuple[str, str]:
            client = tls.async_client()
            try:
                keys = load_keys(self.state_dir / "keys", role="gateway").state
                record, secret = await ClientRegistry(client, keys).create("demo", DEMO_SCOPES)
            finally:
                await client.aclose()
            return record.client_id, secret

        return asyncio.run(create())

    def _all(self) -> list[Child]:
        return [*self.children, *([self.redis.child] if self.redis else [])]

    def dead_child(self) -> Child | None:
        """The first process of the stack that has exited, if any."""
        return next((c for c in self._all() if not c.alive()), None)

    def _wait_ready(self, gateway_url: str) -> None:
        ctx = ssl.create_default_context(cafile=str(self.certs.ca))
        deadline = time.monotonic() + READY_TIMEOUT
        last = "no answer yet"
        with httpx.Client(verify=ctx, timeout=5.0) as client:
            while time.monotonic() < deadline:
                dead = self.dead_child()
                if dead is not None:
                    raise StackError(
                        f"{dead.name} exited with code {dead.process.returncode} during start-up; "
                        f"last lines of {dead.log_path}:\n{dead.log_tail(30)}"
                    )
                try:
                    response = client.get(f"{gateway_url}/readyz")
                    if response.status_code == 200:
                        return
                    last = response.json().get("detail", response.text)
                except httpx.HTTPError as exc:
                    last = type(exc).__name__
                time.sleep(0.3)
        raise StackError(f"the gateway was not ready after {READY_TIMEOUT:g}s: {last}")

    def stop(self) -> None:
        """Stop the gateway, then the worker, then Redis; nothing is left behind."""
        if self._stopping:
            return
        self._stopping = True
        for child in self.children:
            child.stop(timeout=8)
        if self.redis is not None:
            self.redis.stop()


def _write_stack_json(path: Path, info: dict[str, Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(info, fh, indent=2)
        fh.write("\n")
    path.chmod(0o600)


def _print_summary(info: dict[str, Any], stack_json: Path) -> None:
    ca = info["ca_file"]
    url = info["gateway_url"]
    demo = info["demo_client"]
    payload = (
        '{"title":"demo","columns":["city","sales"],"rows":[["Oslo",12],["Lima",7],["Pune",9]]}'
    )
    lines = [
        "",
        "taskgate is up.",
        f"  gateway   {url}  (HTTPS, certificate from the local CA)",
        f"  redis     {info['redis_url']}  (TLS only, client certificates required)",
        f"  CA        {ca}",
        f"  logs      {Path(info['state_dir']) / 'logs'}",
        f"  details   {stack_json}",
        "",
        "Check it:",
        f"  curl --cacert {ca} {url}/readyz",
        "",
        "Submit a real task as the demo client (token -> submit -> poll):",
        f"  TOKEN=$(curl -s --cacert {ca} -d grant_type=client_credentials"
        f" -d client_id={demo['client_id']} -d client_secret={demo['client_secret']} {url}/v1/token"
        " | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')",
        f'  curl -s --cacert {ca} -H "Authorization: Bearer $TOKEN"'
        f" -H 'Content-Type: application/json' -d '{payload}' {url}/v1/tasks/report.generate",
        f'  curl -s --cacert {ca} -H "Authorization: Bearer $TOKEN" {url}/v1/tasks/<id from above>',
        "",
        f"Demo client, admin token and SMTP sink credentials: {stack_json} (mode 0600).",
        "Press Ctrl-C to stop everything.",
    ]
    typer.echo("\n".join(lines))


def up_command(
    state_dir: Annotated[
        Path, typer.Option("--state-dir", envvar="TASKGATE_STATE_DIR", help="State folder.")
    ] = Path(".taskgate"),
    port: Annotated[int, typer.Option(help="Gateway HTTPS port; 0 picks a free one.")] = 8443,
    concurrency: Annotated[int, typer.Option(help="Worker processes.")] = 2,
) -> None:
    """Start the whole local stack: TLS Redis, a worker and the HTTPS gateway."""
    if port == 0 or not _port_free(port):
        port = free_port()
    stack = Stack(state_dir)
    stop_requested: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        stop_requested.append(signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = 0
    try:
        info = stack.start(port=port, concurrency=concurrency)
        stack_json = state_dir / "stack.json"
        _write_stack_json(stack_json, info)
        _print_summary(info, stack_json)
        while not stop_requested:
            dead = stack.dead_child()
            if dead is not None:
                typer.echo(
                    f"taskgate up: {dead.name} exited with code {dead.process.returncode}; "
                    f"stopping the stack. Last lines of {dead.log_path}:\n{dead.log_tail(30)}",
                    err=True,
                )
                code = 1
                break
            time.sleep(0.3)
        if stop_requested:
            typer.echo("\nstopping taskgate...")
    except ConfigError as exc:
        typer.echo(f"taskgate up: refused: {exc}", err=True)
        code = 2
    except (StackError, RedisServerError) as exc:
        typer.echo(f"taskgate up: {exc}", err=True)
        code = 1
    finally:
        stack.stop()
    if code == 0:
        typer.echo("stopped.")
    sys.stdout.flush()
    raise typer.Exit(code)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
