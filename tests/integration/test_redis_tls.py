"""The test Redis speaks mutual TLS only, and our client refuses anything less."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
import ssl
import threading
import warnings
from pathlib import Path

import pytest
import redis

from certs.authority import cert_pem, issue_leaf, key_pem, load_ca, new_ca, write_pem
from certs.material import CertPaths
from security.keystore import KeyRing
from security.tls import RedisTLS
from taskgate.devstack.redis_server import RedisServer, RedisServerError, start_redis
from tests.support.broker import broker_channel
from workers.app import create_celery
from workers.celery_ext.backend import PinnedRedisBackend
from workers.settings import WorkerSettings

pytestmark = pytest.mark.integration


def _client(server: RedisServer, **overrides: object) -> redis.Redis:
    kwargs = server.tls.redis_kwargs() | overrides
    return redis.Redis.from_url(server.url, socket_timeout=3, socket_connect_timeout=3, **kwargs)


def _foreign_client_cert(tmp_path: Path) -> tuple[Path, Path]:
    ca = new_ca("another CA")
    cert, key = issue_leaf(ca, "intruder", server=False)
    write_pem(tmp_path / "c.pem", cert_pem(cert), private=False)
    write_pem(tmp_path / "k.pem", key_pem(key), private=True)
    return tmp_path / "c.pem", tmp_path / "k.pem"


def test_client_with_our_certificate_connects(tls_redis: RedisServer) -> None:
    """A client presenting a certificate from our CA is served."""
    with _client(tls_redis) as client:
        assert client.ping() is True


def test_client_without_certificate_is_refused(tls_redis: RedisServer) -> None:
    """Without a client certificate the TLS handshake is rejected by Redis."""
    with (
        _client(tls_redis, ssl_certfile=None, ssl_keyfile=None) as client,
        pytest.raises(redis.ConnectionError),
    ):
        client.ping()


def test_client_certificate_from_another_ca_is_refused(
    tls_redis: RedisServer, tmp_path: Path
) -> None:
    """A client certificate issued by a foreign CA is rejected."""
    cert, key = _foreign_client_cert(tmp_path)
    with (
        _client(tls_redis, ssl_certfile=str(cert), ssl_keyfile=str(key)) as client,
        pytest.raises(redis.ConnectionError),
    ):
        client.ping()


def test_plain_tcp_is_refused(tls_redis: RedisServer) -> None:
    """Speaking plain RESP to the TLS port gets no Redis reply."""
    with socket.create_connection(("127.0.0.1", tls_redis.port), timeout=3) as sock:
        sock.sendall(b"PING\r\n")
        try:
            data = sock.recv(64)
        except (ConnectionResetError, TimeoutError):
            data = b""
    assert b"PONG" not in data


def test_no_plain_port_is_listening(tls_redis: RedisServer) -> None:
    """The generated config turns the plain-TCP port off."""
    conf = (tls_redis.data_dir / "redis.conf").read_text()
    assert "port 0\n" in conf
    assert "tls-auth-clients yes" in conf


def test_server_from_untrusted_ca_is_refused(tls_redis: RedisServer, tmp_path: Path) -> None:
    """A client trusting another CA refuses our Redis server."""
    other = new_ca("untrusted")
    write_pem(tmp_path / "ca.pem", cert_pem(other.cert), private=False)
    with (
        _client(tls_redis, ssl_ca_certs=str(tmp_path / "ca.pem")) as client,
        pytest.raises(redis.ConnectionError, match=r"(?i)certificate verify failed"),
    ):
        client.ping()


def _redis_with_server_cert(
    tmp_path: Path, pki: CertPaths, *, names: list[str], days: int, not_before: dt.datetime | None
) -> CertPaths:
    """A copy of the session PKI whose Redis server certificate is replaced."""
    folder = tmp_path / "certs"
    folder.mkdir()
    for name in ("ca.pem", "ca-key.pem", "operator-client.pem", "operator-client-key.pem"):
        (folder / name).write_bytes((pki.folder / name).read_bytes())
        (folder / name).chmod(0o600)
    cert, key = issue_leaf(
        load_ca(pki.folder), "odd redis", server=True, names=names, days=days, not_before=not_before
    )
    write_pem(folder / "redis.pem", cert_pem(cert), private=False)
    write_pem(folder / "redis-key.pem", key_pem(key), private=True)
    return CertPaths(folder)


def test_server_certificate_for_another_host_is_refused(tmp_path: Path, pki: CertPaths) -> None:
    """A Redis server whose certificate names another host is refused (hostname check)."""
    paths = _redis_with_server_cert(
        tmp_path, pki, names=["redis.example.net"], days=30, not_before=None
    )
    with pytest.raises(RedisServerError, match=r"(?i)hostname|match"):
        start_redis(paths, tmp_path / "redis", timeout=3)


def test_expired_server_certificate_is_refused(tmp_path: Path, pki: CertPaths) -> None:
    """A Redis server whose certificate has expired is refused by our client."""
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    paths = _redis_with_server_cert(tmp_path, pki, names=["localhost"], days=1, not_before=past)
    # start_redis waits for a verified PING, which must never succeed.
    with pytest.raises(RedisServerError, match=r"(?i)expired"):
        start_redis(paths, tmp_path / "redis", timeout=3)


def test_server_offering_only_tls_1_1_is_refused(pki: CertPaths) -> None:
    """Our Redis client will not talk to a server that offers nothing above TLS 1.1."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.load_cert_chain(str(pki.cert("redis")), str(pki.key("redis")))
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve_once() -> None:
        conn, _ = listener.accept()
        with conn, contextlib.suppress(OSError):
            ctx.wrap_socket(conn, server_side=True).recv(16)

    thread = threading.Thread(target=serve_once, daemon=True)
    thread.start()
    tls = RedisTLS(
        f"rediss://localhost:{port}/0",
        pki.ca,
        pki.cert("gateway-client"),
        pki.key("gateway-client"),
    )
    with (
        tls.client(socket_timeout=3) as client,
        pytest.raises(redis.ConnectionError, match=r"(?i)version|protocol"),
    ):
        client.ping()
    listener.close()
    thread.join(timeout=5)
    assert tls.redis_kwargs()["ssl_min_version"] == ssl.TLSVersion.TLSv1_2


def _trusted_by_the_system_only(
    monkeypatch: pytest.MonkeyPatch, pki: CertPaths, tmp_path: Path
) -> Path:
    """Make our session CA a "system" CA (OpenSSL's default store reads ``SSL_CERT_FILE``)
    and return another CA file to configure as taskgate's own: the test Redis is then
    trusted by the system bundle alone."""
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "no-such-dir"))
    other = new_ca("the CA taskgate is configured with")
    write_pem(tmp_path / "ours.pem", cert_pem(other.cert), private=False)
    return tmp_path / "ours.pem"


def test_redis_verified_by_the_system_bundle_alone_is_refused(
    tls_redis: RedisServer, pki: CertPaths, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """taskgate's Redis clients trust the configured CA file and nothing else: a server whose
    certificate only a system-wide CA vouches for is refused, where redis-py's stock TLS
    connection (its context starts from the system bundle) accepts it."""
    ours = _trusted_by_the_system_only(monkeypatch, pki, tmp_path)
    client_cert, client_key = pki.cert("gateway-client"), pki.key("gateway-client")
    with _client(tls_redis, ssl_ca_certs=str(ours)) as stock:
        assert stock.ping() is True  # the hole the pinned connection closes
    tls = RedisTLS(tls_redis.url, ours, client_cert, client_key)
    with (
        tls.client(socket_timeout=3, socket_connect_timeout=3) as client,
        pytest.raises(redis.ConnectionError, match=r"(?i)certificate verify failed"),
    ):
        client.ping()

    async def async_ping() -> None:
        client = tls.async_client(socket_timeout=3, socket_connect_timeout=3)
        try:
            await client.ping()
        finally:
            await client.aclose()

    with pytest.raises(redis.ConnectionError, match=r"(?i)certificate verify failed"):
        asyncio.run(async_ping())


def test_every_redis_connection_trusts_exactly_the_configured_ca(
    tls_redis: RedisServer,
    pki: CertPaths,
    stack_env: dict[str, str],
    worker_keys: KeyRing,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Clients built by RedisTLS (sync and asyncio), the worker's kombu broker channel and its
    Celery result backend all verify Redis with a context holding our one CA."""
    for key, value in stack_env.items():
        if key.startswith("TASKGATE_"):
            monkeypatch.setenv(key, value)
    ca_subject = ssl._ssl._test_decode_cert(str(pki.ca))["subject"]  # type: ignore[attr-defined]

    def trusted(context: ssl.SSLContext) -> list[object]:
        return [ca["subject"] for ca in context.get_ca_certs()]

    def sync_context(client: redis.Redis) -> ssl.SSLContext:
        assert client.ping() is True
        connection = client.connection_pool.get_connection()
        try:
            sock: object = connection._sock
            assert isinstance(sock, ssl.SSLSocket)
            return sock.context
        finally:
            client.connection_pool.release(connection)

    with tls_redis.tls.client() as client:
        assert trusted(sync_context(client)) == [ca_subject]

    async def async_context() -> ssl.SSLContext:
        client = tls_redis.tls.async_client()
        try:
            assert await client.ping() is True
            # redis-py leaves the asyncio pool's get_connection untyped
            connection = await client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
            context: ssl.SSLContext = connection._writer.get_extra_info("ssl_object").context
            await client.connection_pool.release(connection)
            return context
        finally:
            await client.aclose()

    assert trusted(asyncio.run(async_context())) == [ca_subject]
    app = create_celery(WorkerSettings(), keys=worker_keys)
    try:
        backend = app.backend
        assert isinstance(backend, PinnedRedisBackend)
        assert trusted(sync_context(backend.client)) == [ca_subject]
        with app.connection_for_write() as connection:
            channel = broker_channel(connection.default_channel)
            assert trusted(sync_context(channel.client)) == [ca_subject]
    finally:
        app.close()
