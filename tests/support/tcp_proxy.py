"""A loopback TCP proxy that can lose one answer: the request reaches the server, the
server's reply never reaches the client, and the client's connection is cut.

TLS passes through untouched (the client still verifies the gateway's certificate). Arm
:meth:`DroppingProxy.drop_next_reply` once a connection's handshake is over - after a first
request on a kept-alive connection - so what is swallowed is an HTTP response.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from types import TracebackType

__all__ = ["DroppingProxy"]


class DroppingProxy:
    """Forward ``127.0.0.1:<port>`` to ``upstream``; see the module docstring."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._armed = threading.Event()
        self.dropped = 0
        self.connections = 0
        self._closing = False
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []

    def drop_next_reply(self) -> None:
        self._armed.set()

    def __enter__(self) -> DroppingProxy:
        self._spawn(self._accept)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing = True
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _spawn(self, target: Callable[..., object], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._sockets.append(client)
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:  # nothing upstream: the client sees its connection cut
                client.close()
                continue
            self.connections += 1
            self._sockets.append(upstream)
            self._spawn(self._pump, client, upstream, False)
            self._spawn(self._pump, upstream, client, True)

    def _pump(self, source: socket.socket, dest: socket.socket, replies: bool) -> None:
        for chunk in _chunks(source):
            if replies and self._armed.is_set():
                self._armed.clear()
                self.dropped += 1
                for sock in (source, dest):  # the reply is lost, the connection cut
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                    sock.close()
                return
            try:
                dest.sendall(chunk)
            except OSError:
                return
        with contextlib.suppress(OSError):
            dest.shutdown(socket.SHUT_WR)


def _chunks(sock: socket.socket) -> Iterator[bytes]:
    while True:
        try:
            chunk = sock.recv(65536)
        except OSError:
            return
        if not chunk:
            return
        yield chunk
