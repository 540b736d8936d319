"""TLS for every connection taskgate makes or accepts.

One place builds the SSL contexts and the option dicts that redis-py, kombu (Celery
broker), Celery's Redis result backend and uvicorn need, so that no caller can forget
hostname checks or the client certificate. Insecure choices are not parameters here:
verification is always ``CERT_REQUIRED`` with hostname checks, TLS 1.2 is the floor.
"""

from __future__ import annotations

import functools
import os
import ssl
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import redis
import redis.asyncio
from pydantic import SecretStr

from security.errors import ConfigError
from security.tls_profile import PYTHON_ECDH_CURVE, TLS12_CIPHERS

__all__ = [
    "IDLE_CHECK",
    "MIN_TLS",
    "FreshSSLConnection",
    "PinnedAsyncSSLConnection",
    "PinnedSSLConnection",
    "RedisTLS",
    "check_private_key",
    "check_readable",
    "check_redis_url",
    "check_secret_file",
    "client_context",
    "pinned_redis_context",
    "server_context",
]

MIN_TLS = ssl.TLSVersion.TLSv1_2
_REQUIRED_WORDS = {"required", "cert_required"}
_FALSE_WORDS = {"0", "false", "no", "off", "none"}


def check_redis_url(url: str | None, *, setting: str = "TASKGATE_REDIS_URL") -> str:
    """Refuse anything but a ``rediss://`` URL with certificate checks left on."""
    if not url:
        raise ConfigError(
            setting, "is not set", "set it to rediss://HOST:PORT/DB (or run `taskgate up`)"
        )
    parts = urlsplit(url)
    if parts.scheme != "rediss":
        raise ConfigError(
            setting,
            f"scheme {parts.scheme or '(none)'}:// is not allowed (plain TCP)",
            "use a rediss:// URL to a TLS-enabled Redis",
        )
    if not parts.hostname:
        raise ConfigError(setting, "has no host", "use rediss://HOST:PORT/DB")
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        lowered = value.strip().lower()
        if name == "ssl_cert_reqs" and lowered not in _REQUIRED_WORDS:
            raise ConfigError(
                setting,
                f"ssl_cert_reqs={value} disables certificate checks",
                "remove it; taskgate always requires a verified certificate",
            )
        if name == "ssl_check_hostname" and lowered in _FALSE_WORDS:
            raise ConfigError(
                setting,
                "ssl_check_hostname is turned off",
                "remove it; the server certificate must name the host you connect to",
            )
    return url


def check_readable(path: Path | None, *, setting: str, what: str) -> Path:
    """Refuse a missing or unreadable file."""
    if path is None:
        raise ConfigError(setting, "is not set", f"point it at the {what}")
    if not path.is_file():
        raise ConfigError(
            setting, f"{path} does not exist", f"point it at the {what} (or `taskgate certs init`)"
        )
    if not os.access(path, os.R_OK):
        raise ConfigError(setting, f"{path} is not readable", f"make the {what} readable")
    return path


def check_private_key(path: Path | None, *, setting: str) -> Path:
    """Refuse a missing private key or one readable or writable by group or others."""
    checked = check_readable(path, setting=setting, what="private key (PEM)")
    mode = stat.S_IMODE(checked.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(
            setting,
            f"{checked} is accessible by group or others (mode {mode:04o})",
            f"run `chmod 600 {checked}`",
        )
    return checked


def check_secret_file(path: Path | None, *, setting: str, hint: str) -> Path:
    """Refuse a missing secret file or one accessible by group or others (like a key)."""
    if path is None or not path.is_file():
        raise ConfigError(setting, f"{path} does not exist", hint)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(
            setting,
            f"{path} is accessible by group or others (mode {mode:04o})",
            f"run `chmod 600 {path}`",
        )
    if not os.access(path, os.R_OK):
        raise ConfigError(setting, f"{path} is not readable", "make it readable by this user")
    return path


def client_context(ca_file: Path, cert_file: Path | None, key_file: Path | None) -> ssl.SSLContext:
    """A client context: verify the server against ``ca_file`` and its host name; TLS 1.2+."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
    ctx.minimum_version = MIN_TLS
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    if cert_file is not None:
        ctx.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    return ctx


def server_context(
    cert_file: Path, key_file: Path, *, client_ca: Path | None = None
) -> ssl.SSLContext:
    """A server context offering Mozilla's "intermediate" profile (:mod:`security.tls_profile`):
    TLS 1.2 and 1.3, ECDHE with AEAD ciphers only, no compression; with ``client_ca``
    clients must present a certificate.

    Note: TLS 1.3 suites are OpenSSL's defaults (Python cannot set them), which are the
    profile's three; the key-exchange group is P-256 alone (Python sets one group).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = MIN_TLS
    ctx.set_ciphers(":".join(TLS12_CIPHERS))
    ctx.set_ecdh_curve(PYTHON_ECDH_CURVE)
    ctx.load_cert_chain(str(cert_file), str(key_file))
    ctx.options |= ssl.OP_NO_COMPRESSION
    if client_ca is not None:
        ctx.load_verify_locations(cafile=str(client_ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def pinned_redis_context(
    ca_file: str, cert_file: str | None, key_file: str | None
) -> ssl.SSLContext:
    """The client context for Redis connections: the server is verified against ``ca_file``
    alone, with hostname checks, and the client certificate is presented. Shared by every
    connection (a context is safe to share) until one of the files changes on disk."""
    files = (ca_file, cert_file, key_file)
    return _cached_context(files, tuple(os.stat(f).st_mtime_ns if f else 0 for f in files))


@functools.lru_cache(maxsize=8)
def _cached_context(files: tuple[str | None, ...], _mtimes: tuple[int, ...]) -> ssl.SSLContext:
    ca_file, cert_file, key_file = files
    return client_context(
        Path(str(ca_file)),
        Path(cert_file) if cert_file else None,
        Path(key_file) if key_file else None,
    )


def _pinned(ca_file: str | None, cert_file: str | None, key_file: str | None) -> ssl.SSLContext:
    if not ca_file:  # fail closed: without our CA there is nothing to verify Redis against
        raise ConfigError("ssl_ca_certs", "is not set", "pass the CA file that signed Redis")
    return pinned_redis_context(ca_file, cert_file, key_file)


class PinnedSSLConnection(redis.SSLConnection):
    """redis-py's TLS connection (also kombu's and Celery's), verifying Redis against the
    configured CA file only.

    redis-py starts every connection's context from ``ssl.create_default_context()``, which
    trusts the system's whole CA bundle, and only adds ``ssl_ca_certs`` to it: any public
    CA's certificate for the Redis host name would pass. Here the context trusts the one
    CA file; verification, hostname checks and the TLS floor are :func:`client_context`'s.
    """

    def _wrap_socket_with_ssl(self, sock: Any) -> Any:
        context = _pinned(self.ca_certs, self.certfile, self.keyfile)
        return context.wrap_socket(sock, server_hostname=self.host)


# Seconds a synchronous client's connection may sit idle before its next command is
# preceded by a PING (busy connections never are): see FreshSSLConnection.
IDLE_CHECK = 0.25


class FreshSSLConnection(PinnedSSLConnection):
    """:class:`PinnedSSLConnection` that replaces a stale connection before using it.

    Commands are never retried (redis-py's retry count stays 0): a command whose connection
    broke may have run, and sending a script or a push again would do it twice. A
    connection that sat idle while Redis restarted, though, is dead before anything is sent
    on it, and its next command failed for nothing - in a worker, the success commit after
    a long task body, so the task ran again. Here a connection idle for longer than
    ``health_check_interval`` is PINGed first, and one whose PING fails is reconnected,
    once, before the command goes out: a PING is safe to repeat. If Redis is really
    down, the reconnect fails and raises as before.
    """

    def check_health(self) -> None:
        if not self.health_check_interval or time.monotonic() <= self.next_health_check:
            return
        connection: Any = self  # redis-py leaves these untyped
        try:
            connection._send_ping()
        except (redis.ConnectionError, redis.TimeoutError):
            connection.disconnect()
            # The handshake's own commands must not land here again.
            connection.next_health_check = time.monotonic() + self.health_check_interval
            connection.connect()


class PinnedAsyncSSLConnection(redis.asyncio.SSLConnection):
    """The asyncio twin of :class:`PinnedSSLConnection`."""

    def _connection_arguments(self) -> Any:
        # The plain connection's arguments (host, port, ...) with our context, instead of
        # the one redis-py's SSLConnection would build from the system bundle.
        arguments = dict(super(redis.asyncio.SSLConnection, self)._connection_arguments())
        arguments["ssl"] = _pinned(self.ca_certs, self.certfile, self.keyfile)
        return arguments


@dataclass(frozen=True)
class RedisTLS:
    """Everything needed to reach Redis over mutual TLS as one ACL user. Build clients only
    from here.

    ``username``/``password``: the Redis ACL user this process acts as (Redis 7.0 has no
    certificate-to-user mapping, so the certificate alone does not name the user). The
    password is a :class:`~pydantic.SecretStr` and left out of ``repr``.
    """

    url: str
    ca_file: Path
    client_cert: Path
    client_key: Path
    username: str | None = None
    password: SecretStr | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        check_redis_url(self.url)
        if (self.username is None) != (self.password is None):
            raise ConfigError(
                "TASKGATE_REDIS_USERNAME", "needs a password and vice versa", "set both"
            )

    def _ssl_kwargs(self) -> dict[str, Any]:
        return {
            "ssl_ca_certs": str(self.ca_file),
            "ssl_certfile": str(self.client_cert),
            "ssl_keyfile": str(self.client_key),
            "ssl_cert_reqs": "required",
            "ssl_check_hostname": True,
            "ssl_min_version": MIN_TLS,
        }

    def credentials(self) -> dict[str, str]:
        """``username`` and ``password`` for redis-py (empty without an ACL user)."""
        if self.username is None or self.password is None:
            return {}
        return {"username": self.username, "password": self.password.get_secret_value()}

    def redis_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``redis.Redis`` / ``redis.asyncio.Redis`` ``from_url``."""
        return {**self._ssl_kwargs(), **self.credentials()}

    def celery_ssl(self) -> dict[str, Any]:
        """The dict for Celery's ``broker_use_ssl`` and ``redis_backend_use_ssl`` (TLS only;
        the credentials go in :meth:`celery_credentials`).

        Both need it: the result backend ignores ``broker_use_ssl`` (celery #3830).
        """
        kwargs = self._ssl_kwargs()
        kwargs["ssl_cert_reqs"] = ssl.CERT_REQUIRED
        return kwargs

    def celery_credentials(self) -> dict[str, Any]:
        """Celery settings that log the broker and result backend in as the ACL user,
        outside the URLs (which Celery prints in its banner)."""
        creds = self.credentials()
        if not creds:
            return {}
        return {
            "broker_user": creds["username"],
            "broker_password": creds["password"],
            "redis_username": creds["username"],
            "redis_password": creds["password"],
        }

    def client(self, **extra: Any) -> redis.Redis:
        """A synchronous redis-py client over mTLS, Redis verified against our CA alone;
        a connection idle for :data:`IDLE_CHECK` seconds is checked (and replaced if Redis
        restarted meanwhile) before its next command (:class:`FreshSSLConnection`)."""
        extra.setdefault("health_check_interval", IDLE_CHECK)
        return redis.Redis.from_url(
            self.url, connection_class=FreshSSLConnection, **self.redis_kwargs(), **extra
        )

    def async_client(self, **extra: Any) -> redis.asyncio.Redis:
        """An asyncio redis-py client over mTLS, Redis verified against our CA alone."""
        client = redis.asyncio.Redis.from_url(self.url, **self.redis_kwargs(), **extra)
        # The asyncio pool's from_url lets the URL's scheme pick the class; set ours before
        # the first connection is made.
        client.connection_pool.connection_class = PinnedAsyncSSLConnection
        return client
