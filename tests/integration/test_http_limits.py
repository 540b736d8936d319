"""A request's head is bounded in size, field count and time: 431 and 408, never a hang."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import uvicorn

from gateway.http.header_guard import GuardedHttpToolsProtocol, HeadLimits
from taskgate.devstack.procs import free_port
from tests.support.gateways import Gateway

LIMITS = HeadLimits(max_bytes=4096, max_count=20, timeout=1.0)


async def _hello(scope: dict[str, object], receive: object, send: object) -> None:
    if scope["type"] != "http":
        return
    while True:
        message = await receive()  # type: ignore[operator]
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
    await send({"type": "http.response.body", "body": b"hello"})  # type: ignore[operator]


@pytest.fixture(scope="module")
def guarded() -> Iterator[tuple[str, int]]:
    """uvicorn with the guarded protocol and small limits, on a loopback port."""
    port = free_port()
    config = uvicorn.Config(
        _hello, host="127.0.0.1", port=port, http=GuardedHttpToolsProtocol, log_level="warning"
    )
    config.head_limits = LIMITS  # type: ignore[attr-defined]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield "127.0.0.1", port
    server.should_exit = True
    thread.join(timeout=10)


def _read_all(sock: socket.socket, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except (ConnectionResetError, TimeoutError):
        pass
    return b"".join(chunks)


def _send_until_closed(sock: socket.socket, head: bytes, filler: bytes, total: int) -> None:
    sock.sendall(head)
    sent = 0
    try:
        while sent < total:
            sock.sendall(filler)
            sent += len(filler)
    except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
        return


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def _problem(response: bytes) -> dict[str, object]:
    head, _, body = response.partition(b"\r\n\r\n")
    assert b"content-type: application/problem+json" in head.lower()
    assert b"connection: close" in head.lower()
    return dict(json.loads(body))


def test_an_ordinary_request_is_served(guarded: tuple[str, int]) -> None:
    """Headers within the limits reach the app."""
    with socket.create_connection(guarded) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        response = _read_all(sock)
    assert _status(response) == 200
    assert b"hello" in response


def test_a_large_body_in_the_same_read_as_a_small_head_is_not_a_large_head(
    guarded: tuple[str, int],
) -> None:
    """Only the head counts: a 32 KiB body sent with its head in one write is served."""
    body = b"x" * 32768
    request = (
        b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )
    with socket.create_connection(guarded) as sock:
        sock.sendall(request)
        response = _read_all(sock)
    assert _status(response) == 200


def test_a_16_mb_header_is_answered_431_and_the_connection_closed(
    guarded: tuple[str, int],
) -> None:
    """The head is cut off once it passes the cap; the rest is never buffered."""
    with socket.create_connection(guarded) as sock:
        _send_until_closed(sock, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ", b"a" * 65536, 16 << 20)
        response = _read_all(sock)
    assert _status(response) == 431
    problem = _problem(response)
    assert problem["status"] == 431
    assert str(problem["type"]).endswith("/too-large")


def test_too_many_header_fields_are_answered_431(guarded: tuple[str, int]) -> None:
    """More fields than max_count: 431, and the app never sees the request."""
    fields = b"".join(b"X-F%d: v\r\n" % i for i in range(LIMITS.max_count + 5))
    with socket.create_connection(guarded) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
        response = _read_all(sock)
    assert _status(response) == 431
    assert str(_problem(response)["type"]).endswith("/too-many")


def test_a_slow_head_is_answered_408_within_the_timeout(guarded: tuple[str, int]) -> None:
    """A client trickling its headers is cut off after the head timeout, not held open."""
    with socket.create_connection(guarded) as sock:
        started = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        response = _read_all(sock, timeout=LIMITS.timeout * 5)
        waited = time.monotonic() - started
    assert _status(response) == 408
    assert str(_problem(response)["type"]).endswith("/timeout")
    assert waited < LIMITS.timeout * 4


def test_a_silent_connection_is_closed_after_the_timeout(guarded: tuple[str, int]) -> None:
    """A connection that never sends a byte is answered 408 and closed."""
    with socket.create_connection(guarded) as sock:
        response = _read_all(sock, timeout=LIMITS.timeout * 5)
    assert _status(response) == 408


def test_the_next_request_on_a_kept_alive_connection_has_its_own_head_timeout(
    guarded: tuple[str, int],
) -> None:
    """After one served request, a second head that stalls is answered 408."""
    with socket.create_connection(guarded) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(5)
        first = sock.recv(65536)
        assert _status(first) == 200
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        response = _read_all(sock, timeout=LIMITS.timeout * 5)
    assert _status(response) == 408


def _gateway_socket(gateway: Gateway) -> ssl.SSLSocket:
    url = urlsplit(gateway.url)
    context = ssl.create_default_context(cafile=str(gateway.ca_file))
    raw = socket.create_connection((url.hostname or "localhost", url.port or 443))
    return context.wrap_socket(raw, server_hostname=url.hostname)


def test_the_gateway_answers_a_16_mb_header_with_431(gateway_server: Gateway) -> None:
    """The real gateway over HTTPS runs the guard with its default 16 KiB cap."""
    with _gateway_socket(gateway_server) as sock:
        _send_until_closed(
            sock, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: ", b"a" * 65536, 16 << 20
        )
        response = _read_all(sock)
    assert _status(response) == 431
    assert _problem(response)["status"] == 431


def test_the_gateway_answers_too_many_header_fields_with_431(gateway_server: Gateway) -> None:
    """Past 100 fields the real gateway refuses the request before any route runs."""
    fields = b"".join(b"X-F%d: v\r\n" % i for i in range(150))
    with _gateway_socket(gateway_server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n" + fields + b"\r\n")
        response = _read_all(sock)
    assert _status(response) == 431


def test_the_gateway_still_serves_ordinary_requests(gateway_server: Gateway) -> None:
    """The guard leaves ordinary traffic alone."""
    with gateway_server.client() as client:
        assert client.get("/healthz").status_code == 200
