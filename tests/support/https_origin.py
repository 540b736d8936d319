"""A local HTTPS origin for the safe-fetch tests, with a throwaway PKI and stand-in DNS.

The server answers scripted paths (bodies, redirects, sizes, encodings, slow replies) and
records what it was asked; ``fake_dns`` answers names from a table, as getaddrinfo does.
"""

from __future__ import annotations

import datetime
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

BODY = b"hello world"
BIG = 100_000


# --- throwaway PKI ----------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """Files of a throwaway CA and the certificate it issued for service.test and other.test."""

    ca_file: str
    cert_file: str
    key_file: str


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_pki(directory: Path) -> Pki:
    """Make a CA and a server certificate under ``directory``."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("taskgate test CA"))
        .issuer_name(_name("taskgate test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("service.test"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("service.test"), x509.DNSName("other.test")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(
        ca_file=str(directory / "ca.pem"),
        cert_file=str(directory / "server.pem"),
        key_file=str(directory / "server.key"),
    )
    Path(pki.ca_file).write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    Path(pki.cert_file).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = Path(pki.key_file)
    key_path.touch(mode=0o600)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return pki


# --- local HTTPS server -----------------------------------------------------------------


@dataclass
class Seen:
    """What the origin was asked: each request's path and Host header, oldest first."""

    requests: list[tuple[str, str]] = field(default_factory=list)  # (path, Host header)


class OriginHandler(BaseHTTPRequestHandler):
    """Answers the scripted paths the safe-fetch tests ask for."""

    server: OriginServer

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def _send(self, status: int, body: bytes = b"", **headers: str) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.server.seen.requests.append((self.path, self.headers.get("Host", "")))
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        if parts.path == "/hello":
            self._send(200, BODY, Content_Type="text/plain; charset=utf-8")
        elif parts.path == "/redirect":
            self._send(302, Location=query["to"][0])
        elif parts.path == "/relative":
            self._send(302, Location="/hello")
        elif parts.path == "/loop":
            self._send(302, Location="/loop")
        elif parts.path == "/big":  # no Content-Length: the body ends when the socket closes
            self._send(200, b"x" * BIG, Content_Type="application/octet-stream")
        elif parts.path == "/big-declared":
            self._send(200, b"x" * BIG, Content_Length=str(BIG))
        elif parts.path == "/gzip":
            self._send(200, b"\x1f\x8b", Content_Encoding="gzip", Content_Length="2")
        else:
            self._send(404, b"nope", Content_Length="4")


class OriginServer(ThreadingHTTPServer):
    """The origin, with what it was asked in ``seen``."""

    daemon_threads = True
    seen: Seen

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up early (as the byte cap does) is expected here."""


Resolver = Callable[..., list[tuple[Any, ...]]]


def addrinfo(addresses: list[str], port: int) -> list[tuple[Any, ...]]:
    """``addresses`` as getaddrinfo answers them for TCP on ``port``."""
    return [
        (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, port, 0, 0))
        if ":" in a
        else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
        for a in addresses
    ]


def fake_dns(table: dict[str, list[str]]) -> Resolver:
    """A getaddrinfo stand-in; unknown names fail like NXDOMAIN."""

    def resolve(host: str, port: int, *_args: object) -> list[tuple[Any, ...]]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return addrinfo(table[host], port)

    return resolve


DNS = fake_dns(
    {
        "service.test": ["127.0.0.1"],
        "other.test": ["127.0.0.1"],
        "wrongname.test": ["127.0.0.1"],
        "internal.test": ["10.0.0.5"],
        "dead.test": ["127.0.0.2"],
    }
)
