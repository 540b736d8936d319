"""A local certificate authority and the leaf certificates taskgate needs for mTLS.

Made with the ``cryptography`` package only (no openssl subprocess). Material layout
inside one folder (default ``<state_dir>/certs``)::

    ca.pem / ca-key.pem                     the local CA (keyCertSign only)
    redis.pem / redis-key.pem               Redis server (serverAuth)
    gateway-client.pem / -key.pem           gateway -> Redis client (clientAuth)
    worker-client.pem / -key.pem            worker -> Redis client (clientAuth)
    operator-client.pem / -key.pem          operator CLI -> Redis client (clientAuth)
    monitor-client.pem / -key.pem           Flower -> Redis client (clientAuth)
    https.pem / https-key.pem               the gateway's HTTPS listener (serverAuth)

Private keys are written 0600 and atomically (temp file + rename), so a crash never
leaves a half-written or world-readable key.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "LEAVES",
    "CertificateAuthority",
    "Leaf",
    "default_names",
    "issue_leaf",
    "load_ca",
    "new_ca",
    "write_pem",
]

CA_DAYS = 3650
# Mozilla's TLS profile (v5.7, as sslyze checks it) allows at most 366 days; one day of margin.
# Rotate with `taskgate certs rotate`; `taskgate certs show` warns 30 days ahead.
LEAF_DAYS = 365
_BACKDATE = dt.timedelta(minutes=5)  # tolerate small clock skew between hosts


@dataclass(frozen=True)
class Leaf:
    """One leaf certificate the stack needs: its file stem and its role."""

    stem: str
    common_name: str
    server: bool  # serverAuth (with SANs) or clientAuth


LEAVES: tuple[Leaf, ...] = (
    Leaf("redis", "taskgate redis", server=True),
    Leaf("gateway-client", "taskgate gateway", server=False),
    Leaf("worker-client", "taskgate worker", server=False),
    Leaf("operator-client", "taskgate operator", server=False),
    Leaf("monitor-client", "taskgate monitor", server=False),
    Leaf("https", "taskgate gateway https", server=True),
)


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA certificate and its private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def default_names(extra: Iterable[str] = ()) -> list[str]:
    """SANs every server certificate carries: loopback names plus configured ones."""
    names = ["localhost", "127.0.0.1", "::1"]
    for name in extra:
        if name and name not in names:
            names.append(name)
    return names


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def new_ca(common_name: str = "taskgate local CA", *, days: int = CA_DAYS) -> CertificateAuthority:
    """Create a fresh self-signed CA allowed to sign leaf certificates only."""
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(cert=cert, key=key)


def _san(names: Sequence[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def issue_leaf(
    ca: CertificateAuthority,
    common_name: str,
    *,
    server: bool,
    names: Sequence[str] = (),
    days: int = LEAF_DAYS,
    not_before: dt.datetime | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Issue a server (serverAuth, SANs) or client (clientAuth) certificate from ``ca``.

    A server certificate needs at least one of ``names``: clients check the host name.
    """
    if server and not names:
        raise ValueError("a server certificate needs at least one host name or address")
    key = _new_key()
    start = not_before if not_before is not None else _now() - _BACKDATE
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    if server:
        builder = builder.add_extension(_san(names), critical=False)
    else:
        # A client certificate names its role; Redis ACLs can map it later.
        builder = builder.add_extension(_san([common_name.replace(" ", "-")]), critical=False)
    return builder.sign(ca.key, hashes.SHA256()), key


def write_pem(path: Path, data: bytes, *, private: bool) -> None:
    """Write PEM data atomically; private keys get mode 0600 from the first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    mode = 0o600 if private else 0o644
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)  # the umask may have narrowed or the file pre-existed
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """PKCS#8 PEM of a private key (unencrypted: protected by file mode)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    """PEM of a certificate."""
    return cert.public_bytes(serialization.Encoding.PEM)


def load_ca(folder: Path) -> CertificateAuthority:
    """Load ``ca.pem`` and ``ca-key.pem`` from ``folder``."""
    cert = x509.load_pem_x509_certificate((folder / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((folder / "ca-key.pem").read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError("ca-key.pem is not an EC private key")
    return CertificateAuthority(cert=cert, key=key)
