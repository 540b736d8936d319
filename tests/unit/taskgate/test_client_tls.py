"""The SDK's TLS set-up: the CA it is given, a client certificate when asked, TLS 1.2 floor."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from certs.material import CertPaths, init_certs
from taskgate.client import AsyncClient, Client
from taskgate.client._base import tls_context


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> CertPaths:
    folder = tmp_path_factory.mktemp("pki") / "certs"
    init_certs(folder)
    return CertPaths(folder)


def test_ca_and_client_certificate_are_loaded(pki: CertPaths) -> None:
    """Certificates are verified against the CA given; the client certificate is presented."""
    ctx = tls_context(pki.ca, pki.cert("operator-client"), pki.key("operator-client"))
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert len(ctx.get_ca_certs()) == 1  # the CA given, not the system store


def test_a_key_without_its_certificate_or_a_missing_file_is_refused(
    pki: CertPaths, tmp_path: Path
) -> None:
    """client_key alone is a mistake; a CA file that does not exist fails at once."""
    with pytest.raises(ValueError, match="client_cert"):
        tls_context(pki.ca, None, pki.key("operator-client"))
    with pytest.raises(FileNotFoundError):
        tls_context(tmp_path / "missing.pem", None, None)


def test_clients_take_tls_options_and_timeouts(pki: CertPaths) -> None:
    """Both clients accept the CA, client certificate and timeout options."""
    options = {
        "ca_file": pki.ca,
        "client_cert": pki.cert("operator-client"),
        "client_key": pki.key("operator-client"),
        "timeout": 3.0,
    }
    with Client("https://gw.test", "demo-1a2b3c4d", "s3cret", **options) as client:
        assert client._http.timeout.read == 3.0
        assert "s3cret" not in repr(client)
    aclient = AsyncClient("https://gw.test", "demo-1a2b3c4d", "s3cret", **options)
    assert aclient._http.timeout.connect == 3.0
    asyncio.run(aclient.aclose())
