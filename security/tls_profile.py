"""The TLS profile every taskgate listener offers: Mozilla's "intermediate" configuration.

Mozilla server-side TLS guidelines v5.7 (the profile sslyze checks with
``--mozilla_config=intermediate``): TLS 1.2 and 1.3 only; for TLS 1.2 ECDHE key exchange
with AES-GCM or ChaCha20-Poly1305 only (no CBC, no SHA-1, no static RSA); the three TLS 1.3
suites; key-exchange groups X25519, P-256 and P-384. DHE suites are allowed by the profile
but left out: they need well-chosen 2048-bit parameters and add nothing ECDHE does not give.

The profile does not ask the server to impose its cipher order (every suite on the list is
strong), so clients without AES hardware can pick ChaCha20.

The gateway's HTTPS context applies it in :func:`security.tls.server_context`; the Redis
that ``taskgate up`` starts gets it from :func:`taskgate.devstack.redis_tls.redis_tls_lines` and an
OpenSSL configuration file (:func:`openssl_groups_conf`), because redis-server 7.0 has no
setting for key-exchange groups.
"""

from __future__ import annotations

__all__ = [
    "GROUPS",
    "PYTHON_ECDH_CURVE",
    "TLS12_CIPHERS",
    "TLS13_CIPHERSUITES",
    "TLS_PROTOCOLS",
    "openssl_groups_conf",
]

TLS_PROTOCOLS = ("TLSv1.2", "TLSv1.3")

# OpenSSL names, in Mozilla's order. The RSA twins only matter for an RSA certificate.
TLS12_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
)

TLS13_CIPHERSUITES = (
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
)

# OpenSSL's default list adds X448, P-521 and the FFDHE groups, which the profile excludes.
GROUPS = ("X25519", "prime256v1", "secp384r1")

# Python's ssl module (3.11) sets exactly one group (``SSLContext.set_ecdh_curve``). P-256 is
# the one every client the profile supports can use; a TLS 1.3 client that sent only an
# X25519 key share gets a HelloRetryRequest (one more round trip) and continues with P-256.
PYTHON_ECDH_CURVE = "prime256v1"


def openssl_groups_conf() -> str:
    """OpenSSL configuration text restricting every new TLS context to :data:`GROUPS`.

    For programs that offer no setting of their own, via ``OPENSSL_CONF`` in their
    environment. It replaces the system's ``openssl.cnf`` for that program alone.
    """
    return "\n".join(
        [
            "# Written by taskgate: key-exchange groups of Mozilla's intermediate TLS profile.",
            "openssl_conf = taskgate_init",
            "",
            "[taskgate_init]",
            "ssl_conf = taskgate_ssl",
            "",
            "[taskgate_ssl]",
            "system_default = taskgate_tls",
            "",
            "[taskgate_tls]",
            f"Groups = {':'.join(GROUPS)}",
            "",
        ]
    )
