"""A local HTTPS origin for the safe-fetch tests, with a throwaway PKI and stand-in DNS.

The server answers scripted paths (bodies, redirects, sizes, encodings, slow replies) and
records what it was asked; ``fake_dns`` answers names from a table, as getaddrinfo does.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from certs.authority import cert_pem, issue_leaf, key_pem, new_ca, write_pem

BODY = b"hello world"
BIG = 100_000


# --- throwaway PKI ----------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """Files of a throwaway CA and the certificate it issued for service.test and other.test."""

    ca_file: str
    cert_file: str
    key_file: str


def make_pki(directory: Path) -> Pki:
    """Make a CA and a server certificate under ``directory`` (the project's own CA code)."""
    ca = new_ca("taskgate test CA", days=1)
    cert, key = issue_leaf(ca, "service.test", server=True, names=["service.test", "other.test"])
    pki = Pki(
        ca_file=str(directory / "ca.pem"),
        cert_file=str(directory / "server.pem"),
        key_file=str(directory / "server.key"),
    )
    write_pem(Path(pki.ca_file), cert_pem(ca.cert), private=False)
    write_pem(Path(pki.cert_file), cert_pem(cert), private=False)
    write_pem(Path(pki.key_file), key_pem(key), private=True)
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
