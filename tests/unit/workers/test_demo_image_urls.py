"""Tests for ``image.thumbnail`` fetching its image from a URL.

URLs are fetched from a local HTTPS server whose certificate comes from
``certs.material.init_certs``; host names are answered by a fake resolver, and 127.0.0.1
is reachable only where a test passes ``allow=LOOPBACK`` to the fetcher.
"""

from __future__ import annotations

import functools
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_network
from typing import Any

import pytest
from PIL import Image

from certs.material import CertPaths, init_certs
from security.errors import InputRejectedError, UnsafeURLError
from security.tls import server_context
from tests.support.images import HOST, SPEC
from tests.support.images import encode_image as _encode
from tests.support.images import open_result as _open_result
from tests.support.images import rejected_reason as _rejected_reason
from workers.demo.image import MAX_INPUT_BYTES, Thumbnail, UpstreamUnavailableError, make_thumbnail
from workers.safe_fetch import fetch

LOOPBACK = [ip_network("127.0.0.0/8")]


# --- URLs -------------------------------------------------------------------------------

PNG_BODY = _encode(Image.new("RGB", (512, 256), "purple"), "PNG")


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        if self.path == "/ok.png":
            self._reply(200, PNG_BODY, "image/png")
        elif self.path == "/huge.png":  # declares more than the cap; refused on the header
            self.send_response(200)
            self.send_header("Content-Length", str(MAX_INPUT_BYTES + 1))
            self.end_headers()
        elif self.path == "/busy.png":
            self._reply(503, b"busy", "text/plain")
        elif self.path == "/slow-down.png":
            self._reply(429, b"slow down", "text/plain")
        else:
            self._reply(404, b"nope", "text/plain")

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    paths: list[str]

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up early (as the byte cap does) is expected here."""


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertPaths:
    folder = tmp_path_factory.mktemp("image") / "certs"
    init_certs(folder, names=[HOST])
    return CertPaths(folder)


@pytest.fixture(scope="module")
def https_server(certs: CertPaths) -> Iterator[_Server]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.paths = []
    server.socket = server_context(certs.cert("https"), certs.key("https")).wrap_socket(
        server.socket, server_side=True
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def paths(https_server: _Server) -> list[str]:
    https_server.paths.clear()
    return https_server.paths


@pytest.fixture
def base_url(https_server: _Server) -> str:
    return f"https://{HOST}:{https_server.server_address[1]}"


def _dns(table: dict[str, str]) -> Callable[..., list[tuple[Any, ...]]]:
    def resolve(host: str, port: int, *_args: object) -> list[tuple[Any, ...]]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (table[host], port))]

    return resolve


def _fetcher(certs: CertPaths, *, allow: bool = True) -> Callable[..., Any]:
    return functools.partial(
        fetch,
        allow=LOOPBACK if allow else (),
        resolver=_dns({HOST: "127.0.0.1"}),
        verify=str(certs.ca),
    )


def test_url_is_fetched_and_thumbnailed(base_url: str, certs: CertPaths, paths: list[str]) -> None:
    """An allowed HTTPS URL is fetched through safe_fetch and thumbnailed."""
    payload = Thumbnail(url=f"{base_url}/ok.png", max_width=64, format="webp")
    result = make_thumbnail(payload, fetcher=_fetcher(certs))
    assert (result["width"], result["height"]) == (64, 32)
    assert (result["original_width"], result["original_height"]) == (512, 256)
    assert _open_result(result).format == "WEBP"
    assert paths == ["/ok.png"]


def test_url_resolving_to_loopback_is_refused(
    base_url: str, certs: CertPaths, paths: list[str]
) -> None:
    """Without an explicit allow, a name resolving to 127.0.0.1 is refused; nothing is sent."""
    payload = Thumbnail(url=f"{base_url}/ok.png")
    with pytest.raises(UnsafeURLError) as info:
        make_thumbnail(payload, fetcher=_fetcher(certs, allow=False))
    assert info.value.reason == "non_public_address"
    assert paths == []


def test_url_with_oversize_body_is_refused(base_url: str, certs: CertPaths) -> None:
    """A body larger than 8 MiB is refused by the fetcher's byte cap."""
    payload = Thumbnail(url=f"{base_url}/huge.png")
    assert _rejected_reason(lambda: make_thumbnail(payload, fetcher=_fetcher(certs))) == (
        "too_large"
    )


def test_url_not_found_is_a_final_refusal_without_the_url(base_url: str, certs: CertPaths) -> None:
    """A 4xx answer is refused (not retried) and the error does not quote the URL."""
    payload = Thumbnail(url=f"{base_url}/missing.png")
    with pytest.raises(InputRejectedError) as info:
        make_thumbnail(payload, fetcher=_fetcher(certs))
    assert info.value.reason == "fetch_refused"
    assert info.value.field == "url"
    assert "404" in str(info.value)
    assert HOST not in str(info.value)
    assert info.value.__suppress_context__


@pytest.mark.parametrize("path", ["/busy.png", "/slow-down.png"])
def test_url_server_errors_are_retried(base_url: str, certs: CertPaths, path: str) -> None:
    """5xx and 429 answers raise a retryable error that does not quote the URL."""
    assert SPEC is not None
    payload = Thumbnail(url=f"{base_url}{path}")
    with pytest.raises(UpstreamUnavailableError) as info:
        make_thumbnail(payload, fetcher=_fetcher(certs))
    assert isinstance(info.value, SPEC.retry.retry_on)
    assert HOST not in str(info.value)


def test_url_pointing_at_a_non_image_is_refused(
    base_url: str, certs: CertPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fetched bytes go through the same format allow-list."""
    monkeypatch.setattr(f"{__name__}.PNG_BODY", b"<html>not an image</html>")
    payload = Thumbnail(url=f"{base_url}/ok.png")
    assert _rejected_reason(lambda: make_thumbnail(payload, fetcher=_fetcher(certs))) == (
        "unsupported_format"
    )
