"""An SSRF-safe HTTP GET for tasks that fetch a client-supplied URL.

The address check happens at connect time, on the address actually connected to: the
network backend below resolves the host once through ``netguard.resolve_public`` (which
refuses the name if any answer is not public) and opens the socket to that checked IP.
Nothing resolves the name a second time, so DNS rebinding has no second answer to swap
in. The request itself still names the host, so the ``Host`` header, TLS SNI and
certificate verification all stay on the hostname.

Redirects are followed by hand: every hop is re-checked (scheme, syntax, IP literal) and
then connected through the same guarded backend. Proxies and other environment settings
are ignored, compressed bodies are refused (a gzip bomb would be inflated before any size
check), and the body is streamed with a byte cap and an overall deadline.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import cast
from urllib.parse import urljoin

import httpcore
import httpx

from security.errors import ConfigError, InputRejectedError, UnsafeURLError
from security.netguard import IPNetwork, Resolver, check_url, resolve_public

__all__ = ["FetchResult", "fetch"]

_USER_AGENT = "taskgate-fetch/1"

# Most specific first: the first match wins.
_ERROR_MAP: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
)


@dataclass(frozen=True, slots=True)
class FetchResult:
    """The body of a successful (2xx) response and where it finally came from."""

    content: bytes
    content_type: str
    final_url: str


@contextmanager
def _httpx_errors() -> Iterator[None]:
    """Re-raise httpcore's exceptions as httpx's, as httpx's own transport does."""
    try:
        yield
    except Exception as exc:
        for source, target in _ERROR_MAP:
            if isinstance(exc, source):
                raise target(str(exc)) from exc
        raise


class _GuardedBackend(httpcore.NetworkBackend):
    """Connects only to addresses that ``resolve_public`` accepted, by IP.

    ``connect_unix_socket`` is left to the base class, which refuses it; ``sleep`` (only
    used for connect retries, which are off) too.
    """

    def __init__(self, resolver: Resolver, allow: Sequence[IPNetwork]) -> None:
        self._resolver = resolver
        self._allow = allow
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = resolve_public(host, port, resolver=self._resolver, allow=self._allow)
        except OSError as exc:  # DNS failure: transient, surfaces as httpx.ConnectError
            raise httpcore.ConnectError("name resolution failed") from exc
        failures: list[Exception] = []
        for address in addresses:
            try:
                return self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failures.append(exc)
        raise failures[-1]


class _ResponseStream(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        with _httpx_errors():
            yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


class _GuardedTransport(httpx.BaseTransport):
    """httpx transport over an httpcore pool whose every connection is guarded."""

    def __init__(self, ssl_context: ssl.SSLContext, backend: httpcore.NetworkBackend) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context, network_backend=backend, http1=True, http2=False
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=cast(Iterable[bytes], request.stream),
            extensions=request.extensions,
        )
        with _httpx_errors():
            response = self._pool.handle_request(core_request)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(cast(Iterable[bytes], response.stream)),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._pool.close()


def _ssl_context(verify: ssl.SSLContext | str | bool) -> ssl.SSLContext:
    if verify is False:
        raise ConfigError(
            "verify",
            "certificate verification cannot be turned off",
            "pass a CA file path or an ssl.SSLContext",
        )
    if verify is True:
        context = httpx.create_ssl_context(trust_env=False)
    elif isinstance(verify, str):
        context = ssl.create_default_context(cafile=verify)
    else:
        context = verify
    if context.verify_mode != ssl.CERT_REQUIRED or not context.check_hostname:
        raise ConfigError(
            "verify",
            "the SSL context does not verify certificates and hostnames",
            "use ssl.create_default_context()",
        )
    return context


def _too_large() -> InputRejectedError:
    return InputRejectedError("response body is too large", reason="too_large")


def _read_capped(
    response: httpx.Response, max_bytes: int, deadline: float, clock: Callable[[], float]
) -> bytes:
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise InputRejectedError("compressed response refused", reason="bad_encoding")
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise _too_large()
    body = bytearray()
    for chunk in response.iter_raw():
        body += chunk
        if len(body) > max_bytes:
            raise _too_large()
        if clock() > deadline:
            raise httpx.ReadTimeout("fetch deadline exceeded", request=response.request)
    return bytes(body)


def fetch(
    url: str,
    *,
    max_bytes: int,
    timeout: float = 10,
    max_redirects: int = 3,
    allow: Sequence[IPNetwork] = (),
    resolver: Resolver = socket.getaddrinfo,
    verify: ssl.SSLContext | str | bool = True,
    clock: Callable[[], float] = time.monotonic,
) -> FetchResult:
    """GET an https URL without letting it reach a non-public address.

    ``allow`` lists networks that may be reached anyway (tests, deliberate internal use);
    ``resolver`` is ``socket.getaddrinfo``-compatible; ``verify`` is ``True`` (certifi),
    a CA file path or an ``ssl.SSLContext`` (``False`` is refused: ``ConfigError``).
    ``timeout`` bounds each network operation and, via ``clock``, the whole fetch.

    Raises ``UnsafeURLError`` (bad URL or redirect target, non-public address,
    ``too_many_redirects``), ``InputRejectedError`` (``too_large``, ``bad_encoding``),
    ``httpx.HTTPStatusError`` for a non-2xx final response and other ``httpx.HTTPError``
    for network failures and timeouts (retryable). DNS is not bounded by ``timeout``.
    """
    context = _ssl_context(verify)
    transport = _GuardedTransport(context, _GuardedBackend(resolver, tuple(allow)))
    deadline = clock() + timeout
    current = check_url(url, allow=allow).url
    with httpx.Client(
        transport=transport,
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
        headers={"Accept-Encoding": "identity", "User-Agent": _USER_AGENT},
    ) as client:
        for _hop in range(max_redirects + 1):
            if clock() > deadline:
                raise httpx.TimeoutException("fetch deadline exceeded")
            with client.stream("GET", current) as response:
                if response.is_redirect:
                    target = urljoin(current, response.headers["location"])
                    current = check_url(target, allow=allow).url
                    continue
                response.raise_for_status()
                content = _read_capped(response, max_bytes, deadline, clock)
                return FetchResult(
                    content=content,
                    content_type=response.headers.get("content-type", ""),
                    final_url=current,
                )
    raise UnsafeURLError("too many redirects", reason="too_many_redirects")
