"""The TLS profile of the redis-server that `taskgate up` and the tests start.

Mozilla's "intermediate" profile (:mod:`security.tls_profile`) in redis.conf words, plus the
one part redis-server 7.0 cannot be told in redis.conf: its key-exchange groups. Without a
setting it offers OpenSSL's defaults (X448, P-521 and FFDHE among them); the launcher
therefore starts it with ``OPENSSL_CONF`` pointing at a file that lists the profile's groups.
"""

from __future__ import annotations

import os
from pathlib import Path

from security.tls_profile import (
    TLS12_CIPHERS,
    TLS13_CIPHERSUITES,
    TLS_PROTOCOLS,
    openssl_groups_conf,
)

__all__ = ["OPENSSL_CONF_NAME", "redis_openssl_env", "redis_tls_lines"]

OPENSSL_CONF_NAME = "openssl.cnf"


def redis_tls_lines() -> list[str]:
    """redis.conf directives for protocols and ciphers (certificates are set elsewhere)."""
    return [
        f'tls-protocols "{" ".join(TLS_PROTOCOLS)}"',
        f"tls-ciphers {':'.join(TLS12_CIPHERS)}",
        f"tls-ciphersuites {':'.join(TLS13_CIPHERSUITES)}",
        # The profile leaves the choice among its (all strong) suites to the client.
        "tls-prefer-server-ciphers no",
    ]


def redis_openssl_env(folder: Path) -> dict[str, str]:
    """Write ``folder/openssl.cnf`` (the profile's groups) and return the environment to
    start redis-server with: this process's, with ``OPENSSL_CONF`` pointing at that file.

    Note: the file replaces the system's ``openssl.cnf`` (and any ``OPENSSL_CONF`` already
    set) for redis-server alone.
    """
    conf = folder / OPENSSL_CONF_NAME
    conf.write_text(openssl_groups_conf())
    conf.chmod(0o600)
    return {**os.environ, "OPENSSL_CONF": str(conf)}
