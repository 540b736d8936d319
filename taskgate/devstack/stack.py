"""The whole local stack that `taskgate up` (:mod:`taskgate.devstack.up`) starts and stops.

With nothing configured it creates the state folder, the dev CA and certificates,
starts a TLS-only redis-server on a free loopback port, one worker and the gateway
over HTTPS, waits until ``/readyz`` says 200, then writes ``<state>/stack.json``.
With ``TASKGATE_REDIS_URL`` set it uses that Redis instead of starting one.

The worker and the gateway each run on their own folder (``<state>/roles/<role>/``,
:mod:`taskgate.devstack.role_dirs`): their certificates, their key bundle, nothing else. The admin
token is printed once and kept nowhere in plain text (only its hash, in the gateway's
folder) unless ``--admin-token-file`` asks for a 0600 copy.

Redis runs with an ACL file (``taskgate redis acl``): each role's password is in
``<state>/redis-users/<role>.password`` (0600, copied into that role's folder), and
``stack.json`` names, per role, the client certificate, its key and that file, so tools and
tests can act as any one role. With ``TASKGATE_REDIS_URL`` set, that Redis's ACL must hold
the same users.
"""

from __future__ import annotations

import os
import shutil
import ssl
import time
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from certs.material import CertPaths, init_certs
from gateway.settings import GatewaySettings
from security.config import load_settings
from security.errors import ConfigError, KeyRingError
from security.keys import Role
from security.keystore import init_keys
from security.passwords import hash_admin_token, new_admin_token
from security.tls import RedisTLS
from taskgate.cli.local_operator import CREDENTIAL_FILE, ensure_local_operator
from taskgate.devstack.demo_client import DEMO_SCOPES, ensure_demo_client, previous_demo
from taskgate.devstack.procs import Child, start_child, taskgate_argv
from taskgate.devstack.redis_server import (
    APPENDFSYNC,
    INSTALL_HINT,
    RedisServer,
    start_redis,
)
from taskgate.devstack.redis_users import (
    USERS_DIR,
    describe_users,
    ensure_password,
    password_path,
    write_private,
)
from taskgate.devstack.role_dirs import RoleDirError, prepare_role_dir
from taskgate.devstack.smtp_sink import SinkStartError, launch_sink
from workers.contract.keys import ROLES
from workers.settings import WorkerSettings

__all__ = ["Stack", "StackError"]

READY_TIMEOUT = 90.0
DEMO_MODULES = '["workers.demo.email","workers.demo.report","workers.demo.image"]'
# Key sources that would hand every child the same keys (the full folder `up` made, or
# another): never passed on, each child loads its own bundle.
_SHARED_KEYS = ("TASKGATE_KEYS_DIR", "TASKGATE_KEYS_FILES_DIR", "TASKGATE_ADMIN_TOKEN_FILE")


class StackError(RuntimeError):
    """The stack could not start or a part of it died."""


class Stack:
    """The processes of one local stack and how to stop them."""

    def __init__(
        self,
        state_dir: Path,
        *,
        admin_token_file: Path | None = None,
        reset_demo_client: bool = False,
    ) -> None:
        # Absolute: redis-server changes into its data folder before reading cert paths.
        self.state_dir = state_dir.resolve()
        self.certs = CertPaths(state_dir / "certs")
        self.admin_token_file = admin_token_file
        self.reset_demo_client = reset_demo_client
        self.demo_note = ""
        # The demo client of an earlier run, from the stack.json it left (read before it is
        # rewritten): reused, so each run does not add another enabled client.
        self._previous_demo = previous_demo(state_dir)
        self.roles: dict[Role, Path] = {}
        self.redis: RedisServer | None = None
        self.children: list[Child] = []
        self._stopping = False
        self._admin_token = ""

    def env(self, redis_url: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in _SHARED_KEYS and not k.startswith("TASKGATE_KEY_")
        }
        env.update(
            {
                "TASKGATE_STATE_DIR": str(self.state_dir),
                "TASKGATE_REDIS_URL": redis_url,
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def role_env(self, env: dict[str, str], role: Role) -> dict[str, str]:
        """``env`` for a ``role`` process: its own folder as its state folder."""
        return env | {"TASKGATE_STATE_DIR": str(self.roles[role])}

    def _prepare_roles(self) -> None:
        """Each role's Redis password, then its own folder (certificates, keys, password)."""
        for role in ROLES:
            ensure_password(self.users_dir, role)
        roles: list[Role] = ["worker", "gateway"]
        if self.certs.cert("operator-client").is_file():
            roles.append("operator")  # for the CLI: no process of `up` runs as the operator
        try:
            for role in roles:
                self.roles[role] = prepare_role_dir(self.state_dir, role)
        except (KeyRingError, RoleDirError) as exc:
            raise StackError(f"cannot build the role folders: {exc}") from None

    @staticmethod
    def _check_settings(worker_env: dict[str, str], gateway_env: dict[str, str], port: int) -> None:
        """Refuse unsafe settings here, once, with exit 2 - before any child starts."""
        saved = dict(os.environ)
        try:
            os.environ.clear()
            os.environ.update(worker_env)
            worker = load_settings(WorkerSettings)
            worker.key_ring("worker")
            worker.redis  # noqa: B018 - reads the Redis password: refused here if missing
            os.environ.clear()
            os.environ.update(gateway_env)
            gateway = load_settings(GatewaySettings, port=port)
            gateway.key_ring("gateway")
            gateway.redis  # noqa: B018 - the same for the gateway's
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def start(self, *, port: int, concurrency: int) -> dict[str, Any]:
        """Start everything and return the description written to ``stack.json``."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(0o700)
        init_certs(self.certs.folder)
        init_keys(self.state_dir / "keys")
        self._prepare_roles()
        external = os.environ.get("TASKGATE_REDIS_URL")
        if external:
            redis_url = external
        else:
            if shutil.which("redis-server") is None:
                raise StackError(INSTALL_HINT)
            self.redis = start_redis(
                self.certs,
                self.state_dir / "redis",
                appendfsync=_appendfsync(),
            )
            redis_url = self.redis.url
        env = self.env(redis_url)
        self._new_admin_token()
        smtp = self._start_smtp_sink(env)
        env.setdefault("TASKGATE_TASK_MODULES", DEMO_MODULES)
        env.update({"TASKGATE_SMTP_HOST": "127.0.0.1", "TASKGATE_SMTP_PORT": str(smtp["port"])})
        worker_env, gateway_env = self.role_env(env, "worker"), self.role_env(env, "gateway")
        gateway_env.setdefault("TASKGATE_CONSOLE", "true")  # the web console, at /console
        # One host: the state folder is the key host, so the console may rotate keys there
        # and export the bundles again (a production gateway holds only its bundle).
        gateway_env.setdefault("TASKGATE_CONSOLE_KEY_HOST_DIR", str(self.state_dir / "keys"))
        gateway_env.setdefault("TASKGATE_CONSOLE_ROLES_DIR", str(self.state_dir / "roles"))
        self._check_settings(worker_env, gateway_env, port)
        logs = self.state_dir / "logs"
        worker = start_child(
            "worker",
            taskgate_argv("worker", "--concurrency", str(concurrency)),
            log_path=logs / "worker.log",
            env=worker_env,
        )
        self.children.append(worker)
        gateway = start_child(
            "gateway",
            taskgate_argv("serve", "--port", str(port)),
            log_path=logs / "gateway.log",
            env=gateway_env,
        )
        self.children.append(gateway)
        gateway_url = f"https://localhost:{port}"
        self._wait_ready(gateway_url)
        demo_id, demo_secret = self._demo_client(redis_url)
        operator_token = self._local_operator(redis_url)
        return {
            "gateway_url": gateway_url,
            "console_url": f"{gateway_url}/console",
            "redis_url": redis_url,
            "ca_file": str(self.certs.ca.resolve()),
            "client_cert": str(self.certs.cert("operator-client").resolve()),
            "client_key": str(self.certs.key("operator-client").resolve()),
            "redis_users": describe_users(self.certs, self.users_dir),
            "state_dir": str(self.state_dir.resolve()),
            "roles": {role: str(path) for role, path in self.roles.items()},
            "operator_token_file": str(operator_token),
            "admin_token_file": None
            if self.admin_token_file is None
            else str(self.admin_token_file),
            "demo_client": {
                "client_id": demo_id,
                "client_secret": demo_secret,
                "scopes": DEMO_SCOPES,
            },
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

    @property
    def users_dir(self) -> Path:
        return self.state_dir / USERS_DIR

    def _new_admin_token(self) -> str:
        """A fresh admin token per run. Its hash goes to the gateway's folder only; the
        token itself to ``--admin-token-file`` (0600) if asked, else nowhere on disk."""
        token = new_admin_token()
        (self.state_dir / "admin-token.sha256").unlink(missing_ok=True)  # only the gateway's
        write_private(self.roles["gateway"] / "admin-token.sha256", hash_admin_token(token) + "\n")
        if self.admin_token_file is not None:
            write_private(self.admin_token_file, token + "\n")
        self._admin_token = token  # printed once by the caller, never in stack.json
        return token

    @property
    def admin_token(self) -> str:
        """This run's admin token (to print once)."""
        return self._admin_token

    def _start_smtp_sink(self, env: dict[str, str]) -> dict[str, Any]:
        """The local SMTP sink (STARTTLS, AUTH) that email.send delivers to."""
        try:
            return launch_sink(self.state_dir, self.certs, env, children=self.children)
        except SinkStartError as exc:
            raise StackError(str(exc)) from None

    def _operator_tls(self, redis_url: str) -> RedisTLS:
        return RedisTLS(
            redis_url,
            self.certs.ca,
            self.certs.cert("operator-client"),
            self.certs.key("operator-client"),
            username="operator",
            password=SecretStr(password_path(self.users_dir, "operator").read_text().strip()),
        )

    def _demo_client(self, redis_url: str) -> tuple[str, str]:
        """The state folder's demo client (:mod:`taskgate.devstack.demo_client`), as the
        operator."""
        demo = ensure_demo_client(
            self._operator_tls(redis_url),
            self.state_dir / "keys",
            self._previous_demo,
            reset=self.reset_demo_client,
        )
        self.demo_note = demo.note
        return demo.client_id, demo.secret

    def _local_operator(self, redis_url: str) -> Path:
        """The CLI's named operator (:mod:`taskgate.cli.local_operator`); its credential file."""
        token_file = self.state_dir / "roles" / "operator" / CREDENTIAL_FILE
        ensure_local_operator(self._operator_tls(redis_url), self.state_dir / "keys", token_file)
        return token_file.resolve()

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


def _appendfsync() -> str:
    """``TASKGATE_REDIS_APPENDFSYNC`` for the Redis ``up`` starts (default ``everysec``)."""
    value = os.environ.get("TASKGATE_REDIS_APPENDFSYNC", "everysec").strip().lower()
    if value not in APPENDFSYNC:
        raise ConfigError(
            "TASKGATE_REDIS_APPENDFSYNC",
            f"{value[:16]!r} is not a Redis appendfsync policy",
            "use always, everysec or no",
        )
    return value
