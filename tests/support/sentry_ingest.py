"""A real HTTP server standing in for Sentry's ingest endpoint (tests only).

Plain HTTP on 127.0.0.1: the one place taskgate accepts a DSN without TLS is a loopback
address (``security.sentry_scrub.check_dsn``), so that tests can read what would be sent.
It keeps every request body, decompressed, and answers 200.
"""

from __future__ import annotations

import gzip
import json
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Ingest:
    """What the stand-in received."""

    port: int
    bodies: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def dsn(self) -> str:
        return f"http://publickey@127.0.0.1:{self.port}/1"

    def raw(self) -> bytes:
        with self.lock:
            return b"\n".join(self.bodies)

    def events(self) -> list[dict[str, Any]]:
        """Error events found in the envelopes (items with an exception or a log entry)."""
        found = []
        for line in self.raw().splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict) and ("exception" in item or "logentry" in item):
                found.append(item)
        return found


def _decoded(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "br":
        import brotli

        return bytes(brotli.decompress(body))
    return body


@contextmanager
def sentry_ingest() -> Iterator[Ingest]:
    """Serve on a free loopback port until the block ends."""
    holder: list[Ingest] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            data = _decoded(body, (self.headers.get("Content-Encoding") or "").lower())
            with holder[0].lock:
                holder[0].bodies.append(data)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *_args: Any) -> None:  # quiet: the test reads the bodies
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder.append(Ingest(port=server.server_address[1]))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder[0]
    finally:
        server.shutdown()
        server.server_close()
