"""Start a TLS-only `redis-server` (plain port off, client certificates required, ACL users).

Used by `taskgate up` and by the test harness, so the stack developers run and the one
tests exercise are configured the same way. Redis loads the roles' ACL users from an ACL
file in its data folder (``taskgate.devstack.redis_users``); the ``default`` user is off.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import redis
from pydantic import SecretStr

from certs.material import CertPaths
from security.tls import RedisTLS
from taskgate.devstack.procs import Child, free_port, start_child
from taskgate.devstack.redis_tls import redis_openssl_env, redis_tls_lines
from taskgate.devstack.redis_users import (
    HARNESS,
    USERS_DIR,
    acl_lines,
    password_path,
    write_private,
)

__all__ = [
    "APPENDFSYNC",
    "INSTALL_HINT",
    "RedisServer",
    "RedisServerError",
    "redis_config",
    "start_redis",
]

INSTALL_HINT = (
    "redis-server was not found on PATH. Install it (Debian/Ubuntu: `sudo apt-get install "
    "redis-server`; macOS: `brew install redis`) - a build with TLS support is required."
)


class RedisServerError(RuntimeError):
    """redis-server is missing or did not come up."""


@dataclass
class RedisServer:
    """A running TLS-only redis-server and how to reach it."""

    child: Child
    port: int
    tls: RedisTLS  # the harness user if started with one, else the operator
    data_dir: Path
    certs: CertPaths
    users_dir: Path

    @property
    def url(self) -> str:
        return self.tls.url

    def as_user(self, user: str) -> RedisTLS:
        """How to reach this Redis as ``user`` (a role, or the harness), with its
        certificate (the operator's for the harness) and password."""
        return _user_tls(self.url, self.certs, self.users_dir, user)

    def stop(self) -> None:
        self.child.stop()


APPENDFSYNC: Final = ("always", "everysec", "no")


def redis_config(
    port: int,
    certs: CertPaths,
    data_dir: Path,
    *,
    appendonly: bool = True,
    appendfsync: str = "everysec",
) -> str:
    """The redis.conf text: TLS only, mTLS, loopback, append-only file in ``data_dir``.

    ``appendfsync`` is how often the append-only file reaches the disk: ``everysec`` (a
    Redis crash can lose up to a second of accepted work), ``always`` (every write, before
    Redis answers: nothing acknowledged is lost, at a cost per write) or ``no``.
    """
    if appendfsync not in APPENDFSYNC:
        raise RedisServerError(f"appendfsync must be one of {', '.join(APPENDFSYNC)}")
    lines = [
        "port 0",  # the plain-TCP port is off
        f"tls-port {port}",
        "bind 127.0.0.1 -::1",
        "protected-mode yes",
        f"tls-cert-file {certs.cert('redis')}",
        f"tls-key-file {certs.key('redis')}",
        f"tls-ca-cert-file {certs.ca}",
        "tls-auth-clients yes",
        *redis_tls_lines(),
        f"dir {data_dir}",
        'save ""',
        f"appendonly {'yes' if appendonly else 'no'}",
        f"appendfsync {appendfsync}",
        # Most of what taskgate stores is ciphertext (envelopes, vault entries) or base64 of
        # it: LZF compresses it by about a seventh at more than twice the CPU of an AOF
        # rewrite (docs/decisions/0037-rdb-compression-off.md).
        "rdbcompression no",
        "daemonize no",
        "loglevel notice",
        # Admin-only commands are renamed away from clients that could reach them.
        'rename-command DEBUG ""',
        f"aclfile {data_dir / 'users.acl'}",
    ]
    return "\n".join(lines) + "\n"


def start_redis(
    certs: CertPaths,
    data_dir: Path,
    *,
    users_dir: Path | None = None,
    harness: bool = False,
    port: int | None = None,
    appendonly: bool = True,
    appendfsync: str = "everysec",
    timeout: float = 15.0,
) -> RedisServer:
    """Start redis-server with TLS only and the roles' ACL users; wait until it answers
    PING over mTLS.

    Passwords come from ``users_dir`` (default: ``redis-users`` beside the certificate
    folder, i.e. ``<state_dir>/redis-users``), created if missing. ``harness`` adds a user
    with every right for test harnesses (flushing between tests); the stack never does.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisServerError(INSTALL_HINT)
    # redis-server changes into its data folder first: relative paths would break.
    certs = CertPaths(certs.folder.resolve())
    users = (users_dir or certs.folder.parent / USERS_DIR).resolve()
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    port = port or free_port()
    write_private(data_dir / "users.acl", "\n".join(acl_lines(users, harness=harness)) + "\n")
    conf = data_dir / "redis.conf"
    conf.write_text(
        redis_config(port, certs, data_dir, appendonly=appendonly, appendfsync=appendfsync)
    )
    conf.chmod(0o600)
    child = start_child(
        "redis",
        [binary, str(conf)],
        log_path=data_dir / "redis.log",
        env=redis_openssl_env(data_dir),
    )
    tls = _user_tls(
        f"rediss://localhost:{port}/0", certs, users, HARNESS if harness else "operator"
    )
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        if not child.alive():
            raise RedisServerError(f"redis-server exited at start:\n{child.log_tail()}")
        try:
            with tls.client(socket_timeout=1, socket_connect_timeout=1) as client:
                if client.ping():
                    return RedisServer(child, port, tls, data_dir, certs, users)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            last_error = str(exc)
        time.sleep(0.05)
    child.stop()
    raise RedisServerError(f"redis-server did not answer over TLS in {timeout}s: {last_error}")


def _user_tls(url: str, certs: CertPaths, users_dir: Path, user: str) -> RedisTLS:
    stem = "operator-client" if user == HARNESS else f"{user}-client"
    return RedisTLS(
        url=url,
        ca_file=certs.ca,
        client_cert=certs.cert(stem),
        client_key=certs.key(stem),
        username=user,
        password=SecretStr(password_path(users_dir, user).read_text().strip()),
    )
