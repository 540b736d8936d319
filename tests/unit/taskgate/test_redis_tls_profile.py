"""The redis.conf `taskgate up` writes carries Mozilla's "intermediate" TLS profile."""

from __future__ import annotations

from pathlib import Path

from certs.material import CertPaths
from taskgate.devstack.redis_server import redis_config
from taskgate.devstack.redis_tls import redis_openssl_env


def test_redis_config_restricts_protocols_and_ciphers(tmp_path: Path) -> None:
    """TLS 1.2 and 1.3 only, ECDHE AEAD suites for 1.2, the three 1.3 suites, client's order."""
    conf = redis_config(6390, CertPaths(tmp_path / "certs"), tmp_path / "data").splitlines()
    assert 'tls-protocols "TLSv1.2 TLSv1.3"' in conf
    ciphers = next(line for line in conf if line.startswith("tls-ciphers "))
    assert "CBC" not in ciphers
    assert ciphers.split()[1].split(":") == [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ]
    assert (
        "tls-ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
        "TLS_CHACHA20_POLY1305_SHA256"
    ) in conf
    assert "tls-prefer-server-ciphers no" in conf


def test_redis_environment_points_openssl_at_the_groups_file(tmp_path: Path) -> None:
    """redis-server is started with OPENSSL_CONF naming a private file that lists the
    profile's groups; the rest of the environment is passed on."""
    env = redis_openssl_env(tmp_path)
    conf = Path(env["OPENSSL_CONF"])
    assert conf.parent == tmp_path
    assert conf.stat().st_mode & 0o777 == 0o600
    assert "Groups = X25519:prime256v1:secp384r1" in conf.read_text()
    assert "PATH" in env
