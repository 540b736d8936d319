"""Redis connections verify the server against the configured CA file alone."""

from __future__ import annotations

import os
import socket
import ssl
from pathlib import Path

import pytest

from certs.authority import cert_pem, issue_leaf, key_pem, new_ca, write_pem
from security.errors import ConfigError
from security.tls import MIN_TLS, PinnedSSLConnection, pinned_redis_context


@pytest.fixture
def files(tmp_path: Path) -> tuple[str, str, str]:
    ca = new_ca("pinning test CA")
    cert, key = issue_leaf(ca, "client", server=False)
    write_pem(tmp_path / "ca.pem", cert_pem(ca.cert), private=False)
    write_pem(tmp_path / "c.pem", cert_pem(cert), private=False)
    write_pem(tmp_path / "k.pem", key_pem(key), private=True)
    return str(tmp_path / "ca.pem"), str(tmp_path / "c.pem"), str(tmp_path / "k.pem")


def test_pinned_context_trusts_the_ca_file_alone_and_checks_everything(
    files: tuple[str, str, str],
) -> None:
    """One CA in the store (no system bundle), certificates required, host names checked,
    TLS 1.2 at least."""
    context = pinned_redis_context(*files)
    assert context.cert_store_stats()["x509_ca"] == 1
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.minimum_version == MIN_TLS


def test_pinned_context_is_shared_until_a_file_changes_on_disk(
    files: tuple[str, str, str],
) -> None:
    """Connections share one context (no rebuild per connection), and a renewed certificate
    is picked up by the next connection."""
    first = pinned_redis_context(*files)
    assert pinned_redis_context(*files) is first
    stat = os.stat(files[1])
    os.utime(files[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert pinned_redis_context(*files) is not first


def test_connection_without_a_ca_file_fails_closed() -> None:
    """Without a CA file there is nothing to verify Redis against: no handshake at all."""
    connection = PinnedSSLConnection(host="localhost", port=6380, ssl_ca_certs=None)
    left, right = socket.socketpair()
    with left, right, pytest.raises(ConfigError, match="ssl_ca_certs"):
        connection._wrap_socket_with_ssl(left)
