"""Start a TLS-only `redis-server` (plain port off, client certificates required).

Used by `taskgate up` and by the test harness, so the stack developers run and the one
tests exercise are configured the same way.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from certs.material import CertPaths
from security.tls import RedisTLS
from taskgate.procs import Child, free_port, start_child
from taskgate.redis_tls import redis_openssl_env, redis_tls_lines

__all__ = ["INSTALL_HINT", "RedisServer", "RedisServerError", "redis_config", "start_redis"]

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
    tls: RedisTLS
    data_dir: Path

    @property
    def url(self) -> str:
        return self.tls.url

    def stop(self) -> None:
        self.child.stop()


def redis_config(port: int, certs: CertPaths, data_dir: Path, *, appendonly: bool = True) -> str:
    """The redis.conf text: TLS only, mTLS, loopback, append-only file in ``data_dir``."""
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
        "appendfsync everysec",
        "daemonize no",
        "loglevel notice",
        # Admin-only commands are renamed away from clients that could reach them.
        'rename-command DEBUG ""',
    ]
    return "\n".join(lines) + "\n"


def start_redis(
    certs: CertPaths,
    data_dir: Path,
    *,
    client_role: str = "gateway-client",
    port: int | None = None,
    appendonly: bool = True,
    timeout: float = 15.0,
) -> RedisServer:
    """Start redis-server with TLS only and wait until it answers PING over mTLS."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisServerError(INSTALL_HINT)
    # redis-server changes into its data folder first: relative paths would break.
    certs = CertPaths(certs.folder.resolve())
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    port = port or free_port()
    conf = data_dir / "redis.conf"
    conf.write_text(redis_config(port, certs, data_dir, appendonly=appendonly))
    conf.chmod(0o600)
    child = start_child(
        "redis",
        [binary, str(conf)],
        log_path=data_dir / "redis.log",
        env=redis_openssl_env(data_dir),
    )
    tls = RedisTLS(
        url=f"rediss://localhost:{port}/0",
        ca_file=certs.ca,
        client_cert=certs.cert(client_role),
        client_key=certs.key(client_role),
    )
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        if not child.alive():
            raise RedisServerError(f"redis-server exited at start:\n{child.log_tail()}")
        try:
            with tls.client(socket_timeout=1, socket_connect_timeout=1) as client:
                if client.ping():
                    return RedisServer(child=child, port=port, tls=tls, data_dir=data_dir)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            last_error = str(exc)
        time.sleep(0.05)
    child.stop()
    raise RedisServerError(f"redis-server did not answer over TLS in {timeout}s: {last_error}")
