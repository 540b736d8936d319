"""Limits on a request's head, enforced where uvicorn reads the socket.

uvicorn has no cap on header size or count and no timeout while a request's head
arrives: a 16 MB header is parsed and answered, and a client sending one byte a minute
holds its connection open indefinitely. An ASGI middleware cannot help (it runs once the
head is complete), so :class:`GuardedHttpToolsProtocol` wraps uvicorn's httptools
protocol:

* the bytes of a request's head are counted as they arrive; past ``max_bytes`` the
  connection is answered ``431`` and closed, so at most ``max_bytes`` plus one read is
  buffered;
* more than ``max_count`` header fields: ``431``;
* a head not complete ``timeout`` seconds after the connection opened (or, on a
  keep-alive connection, after the next request's first byte): ``408``.

Answers are RFC 9457 problem documents, like every other refusal of the gateway.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from gateway.http.problems import PROBLEM_JSON, PROBLEM_TYPE_BASE

__all__ = ["GuardedHttpToolsProtocol", "HeadLimits"]


@dataclass(frozen=True)
class HeadLimits:
    """How large a request head may be and how long it may take to arrive."""

    max_bytes: int = 16 * 1024
    max_count: int = 100
    timeout: float = 10.0


_TITLES = {408: "Request Timeout", 431: "Request Header Fields Too Large"}
_DETAILS = {
    "too_large": "The request's headers are larger than this server accepts.",
    "too_many": "The request has more header fields than this server accepts.",
    "timeout": "The request's headers did not arrive in time.",
}


def _problem(status: int, reason: str) -> bytes:
    body = json.dumps(
        {
            "type": PROBLEM_TYPE_BASE + reason.replace("_", "-"),
            "title": _TITLES[status],
            "status": status,
            "detail": _DETAILS[reason],
        },
        separators=(",", ":"),
    ).encode()
    return b"".join(
        [
            STATUS_LINE[status],
            b"content-type: " + PROBLEM_JSON.encode() + b"\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
            body,
        ]
    )


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with :class:`HeadLimits` (from ``config.head_limits``)."""

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self._limits: HeadLimits = getattr(config, "head_limits", None) or HeadLimits()
        self._in_head = False
        self._head_bytes = 0
        self._head_fields = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._refusal: tuple[int, str] | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # Checked after the parser ran: a read that completes the head and carries part of
        # the body is not a large head.
        if self._in_head and self._head_bytes > self._limits.max_bytes:
            self._refuse(431, "too_large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_head:  # the next request on a keep-alive connection
            self._start_head()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_fields += 1
        if self._head_fields > self._limits.max_count:
            self._refusal = (431, "too_many")
            # Raising stops the parser; uvicorn answers through send_400_response below.
            raise ValueError("too many header fields")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._stop_timer()
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        if self._refusal is not None:
            self._write_refusal(*self._refusal)
            return
        super().send_400_response(msg)

    def _start_head(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        self._head_fields = 0
        self._stop_timer()
        self._head_timer = self.loop.call_later(self._limits.timeout, self._head_timed_out)

    def _stop_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self._refuse(408, "timeout")

    def _refuse(self, status: int, reason: str) -> None:
        self._refusal = (status, reason)
        self._write_refusal(status, reason)

    def _write_refusal(self, status: int, reason: str) -> None:
        self._in_head = False
        self._stop_timer()
        self.logger.info("request head refused: %s (%d)", reason, status)
        if not self.transport.is_closing():
            self.transport.write(_problem(status, reason))
            self.transport.close()
