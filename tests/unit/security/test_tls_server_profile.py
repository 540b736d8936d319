"""The gateway's server context offers Mozilla's "intermediate" profile and nothing else."""

from __future__ import annotations

import ssl
from pathlib import Path

from certs.material import CertPaths, init_certs
from security.tls import server_context
from security.tls_profile import GROUPS, TLS12_CIPHERS, TLS13_CIPHERSUITES, openssl_groups_conf


def test_server_context_offers_only_the_profiles_aead_suites(tmp_path: Path) -> None:
    """TLS 1.2 floor, no compression, and every enabled suite is one the profile lists
    (ECDHE with AES-GCM or ChaCha20-Poly1305, or a TLS 1.3 suite): no CBC, no SHA-1."""
    init_certs(tmp_path / "certs")
    paths = CertPaths(tmp_path / "certs")
    context = server_context(paths.cert("https"), paths.key("https"))
    names = {cipher["name"] for cipher in context.get_ciphers()}
    assert names <= set(TLS12_CIPHERS) | set(TLS13_CIPHERSUITES)
    assert set(TLS13_CIPHERSUITES) <= names
    assert {"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"} <= names
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION


def test_openssl_conf_lists_exactly_the_profiles_groups() -> None:
    """The OpenSSL configuration for programs without a groups setting names X25519, P-256
    and P-384 in its system-default TLS section."""
    text = openssl_groups_conf()
    assert "Groups = X25519:prime256v1:secp384r1\n" in text
    assert GROUPS == ("X25519", "prime256v1", "secp384r1")
    assert "system_default = " in text
