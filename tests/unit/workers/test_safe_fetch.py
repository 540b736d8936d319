"""Tests for workers.safe_fetch: the SSRF-safe GET, against a local HTTPS server only.

Every hostname is answered by a fake resolver; the only real socket is 127.0.0.1, and it is
reachable only when a test passes ``allow=LOOPBACK``.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from ipaddress import ip_network
from typing import Any

import httpx
import pytest

from security.errors import ConfigError, InputRejectedError, UnsafeURLError
from security.netguard import resolve_public
from tests.support.https_origin import BIG, BODY, DNS, Pki, Seen, fake_dns
from tests.support.https_origin import OriginHandler as _Handler
from tests.support.https_origin import OriginServer as _Server
from tests.support.https_origin import addrinfo as _infos
from tests.support.https_origin import make_pki as _make_pki
from workers.safe_fetch import FetchResult, fetch

LOOPBACK = [ip_network("127.0.0.0/8")]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return _make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def https_server(pki: Pki) -> Iterator[_Server]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.seen = Seen()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.cert_file, pki.key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def seen(https_server: _Server) -> Seen:
    https_server.seen.requests.clear()
    return https_server.seen


@pytest.fixture
def port(https_server: _Server) -> int:
    return int(https_server.server_address[1])


@pytest.fixture
def ca(pki: Pki) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=pki.ca_file)


def _get(url: str, ca: ssl.SSLContext, **kwargs: Any) -> FetchResult:
    options: dict[str, Any] = {"max_bytes": 1000, "allow": LOOPBACK, "resolver": DNS, "verify": ca}
    options.update(kwargs)
    return fetch(url, **options)


# --- happy path -------------------------------------------------------------------------


def test_fetch_returns_body_type_and_final_url(port: int, ca: ssl.SSLContext, seen: Seen) -> None:
    """An allowed local HTTPS server is fetched; Host stays the hostname, not the IP.

    service.test exists only in the fake resolver, so success also proves the socket went
    to the checked answer and the name was never handed to the system resolver.
    """
    result = _get(f"https://service.test:{port}/hello", ca)
    assert result == FetchResult(
        content=BODY,
        content_type="text/plain; charset=utf-8",
        final_url=f"https://service.test:{port}/hello",
    )
    assert seen.requests == [("/hello", f"service.test:{port}")]


def test_fetch_accepts_ca_file_path_for_verify(port: int, pki: Pki) -> None:
    """verify may be a CA bundle path."""
    result = fetch(
        f"https://service.test:{port}/hello",
        max_bytes=100,
        allow=LOOPBACK,
        resolver=DNS,
        verify=pki.ca_file,
    )
    assert result.content == BODY


def test_fetch_verifies_certificate_against_hostname_not_ip(port: int, ca: ssl.SSLContext) -> None:
    """Connecting by IP keeps SNI and verification on the name: a name not in the cert fails."""
    with pytest.raises(httpx.ConnectError, match=r"CERTIFICATE_VERIFY_FAILED|match"):
        _get(f"https://wrongname.test:{port}/hello", ca)


def test_fetch_default_verify_uses_public_roots(port: int) -> None:
    """verify=True trusts public CAs only, so the throwaway CA is refused."""
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        fetch(f"https://service.test:{port}/hello", max_bytes=100, allow=LOOPBACK, resolver=DNS)


def test_fetch_tries_next_address_when_one_refuses(port: int, ca: ssl.SSLContext) -> None:
    """If the first checked address refuses the connection, the next checked one is used."""
    resolver = fake_dns({"service.test": ["127.0.0.2", "127.0.0.1"]})
    assert _get(f"https://service.test:{port}/hello", ca, resolver=resolver).content == BODY


def test_fetch_reports_connect_failure(port: int, ca: ssl.SSLContext) -> None:
    """When every checked address refuses, the result is httpx.ConnectError (retryable)."""
    with pytest.raises(httpx.ConnectError):
        _get(f"https://dead.test:{port}/hello", ca)


def test_fetch_ignores_proxy_environment(
    port: int, ca: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTPS_PROXY/ALL_PROXY in the environment are not used."""
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    assert _get(f"https://service.test:{port}/hello", ca).content == BODY


# --- refusals before any connection -----------------------------------------------------


def test_fetch_refuses_http(ca: ssl.SSLContext, seen: Seen) -> None:
    """Plain http:// is refused."""
    with pytest.raises(UnsafeURLError) as info:
        _get("http://service.test/hello", ca)
    assert info.value.reason == "scheme_not_allowed"


def test_fetch_refuses_credentials_in_url(port: int, ca: ssl.SSLContext, seen: Seen) -> None:
    """user:password@ in the URL is refused and nothing is sent."""
    with pytest.raises(UnsafeURLError) as info:
        _get(f"https://user:pw@service.test:{port}/hello", ca)
    assert info.value.reason == "credentials"
    assert seen.requests == []


@pytest.mark.parametrize("answer", ["127.0.0.1", "10.1.2.3", "169.254.169.254", "::1"])
def test_fetch_refuses_host_resolving_to_internal_address(
    answer: str, port: int, ca: ssl.SSLContext, seen: Seen
) -> None:
    """A name resolving to loopback, private, metadata or ::1 is refused at connect."""
    resolver = fake_dns({"evil.test": [answer]})
    with pytest.raises(UnsafeURLError) as info:
        fetch(f"https://evil.test:{port}/hello", max_bytes=100, resolver=resolver, verify=ca)
    assert info.value.reason == "non_public_address"
    assert seen.requests == []


def test_fetch_refuses_when_any_answer_is_internal(
    port: int, ca: ssl.SSLContext, seen: Seen
) -> None:
    """A public answer does not launder an internal one in the same response."""
    resolver = fake_dns({"mixed.test": ["93.184.216.34", "127.0.0.1"]})
    with pytest.raises(UnsafeURLError):
        fetch(f"https://mixed.test:{port}/hello", max_bytes=100, resolver=resolver, verify=ca)
    assert seen.requests == []


def test_fetch_refuses_dns_rebinding(port: int, ca: ssl.SSLContext, seen: Seen) -> None:
    """Validation saw a public answer; the connect-time lookup gets 127.0.0.1 and is refused."""
    answers = iter([["93.184.216.34"], ["127.0.0.1"]])
    calls: list[str] = []

    def rebinding(host: str, port: int, *_args: object) -> list[tuple[Any, ...]]:
        calls.append(host)
        return _infos(next(answers), port)

    # What a naive "validate first, fetch later" check would see: a public address.
    assert resolve_public("rebind.test", port, resolver=rebinding) == ["93.184.216.34"]
    with pytest.raises(UnsafeURLError) as info:
        fetch(f"https://rebind.test:{port}/hello", max_bytes=100, resolver=rebinding, verify=ca)
    assert info.value.reason == "non_public_address"
    assert calls == ["rebind.test", "rebind.test"]  # the connect resolved again, and was checked
    assert seen.requests == []


def test_fetch_resolves_once_and_connects_to_that_answer(port: int, ca: ssl.SSLContext) -> None:
    """One lookup per connection: the checked answer is the address used, never re-resolved."""
    calls: list[str] = []

    def counting(host: str, port: int, *args: object) -> list[tuple[Any, ...]]:
        calls.append(host)
        return DNS(host, port, *args)

    assert _get(f"https://service.test:{port}/hello", ca, resolver=counting).content == BODY
    assert calls == ["service.test"]


def test_fetch_reports_dns_failure_as_connect_error(ca: ssl.SSLContext) -> None:
    """NXDOMAIN becomes httpx.ConnectError (retryable), not a crash."""
    with pytest.raises(httpx.ConnectError, match="name resolution failed"):
        _get("https://unknown.test/hello", ca)


def test_fetch_refuses_ip_literal_internal_url(ca: ssl.SSLContext) -> None:
    """An internal IP literal is refused before connecting."""
    with pytest.raises(UnsafeURLError) as info:
        fetch("https://169.254.169.254/latest/meta-data/", max_bytes=100, verify=ca)
    assert info.value.reason == "non_public_address"


# --- redirects --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.1/",
        "https://[::1]/",
        "https://[fd00:ec2::254]/",
    ],
)
def test_fetch_refuses_redirect_to_internal_ip(
    target: str, port: int, ca: ssl.SSLContext, seen: Seen
) -> None:
    """A redirect from an allowed host to an internal literal is refused at the hop."""
    with pytest.raises(UnsafeURLError) as info:
        _get(f"https://service.test:{port}/redirect?to={target}", ca)
    assert info.value.reason == "non_public_address"
    assert len(seen.requests) == 1


def test_fetch_refuses_redirect_to_name_resolving_internal(
    port: int, ca: ssl.SSLContext, seen: Seen
) -> None:
    """A redirect to a hostname that resolves internally is refused at connect."""
    with pytest.raises(UnsafeURLError) as info:
        _get(f"https://service.test:{port}/redirect?to=https://internal.test/x", ca)
    assert info.value.reason == "non_public_address"


def test_fetch_refuses_redirect_to_http(port: int, ca: ssl.SSLContext) -> None:
    """A downgrade redirect to http:// is refused."""
    with pytest.raises(UnsafeURLError) as info:
        _get(f"https://service.test:{port}/redirect?to=http://service.test:{port}/hello", ca)
    assert info.value.reason == "scheme_not_allowed"


def test_fetch_follows_allowed_redirects(port: int, ca: ssl.SSLContext, seen: Seen) -> None:
    """Relative and cross-host redirects to allowed hosts are followed; final_url says where."""
    assert _get(f"https://service.test:{port}/relative", ca).final_url == (
        f"https://service.test:{port}/hello"
    )
    result = _get(f"https://service.test:{port}/redirect?to=https://other.test:{port}/hello", ca)
    assert (result.content, result.final_url) == (BODY, f"https://other.test:{port}/hello")
    assert seen.requests[-1] == ("/hello", f"other.test:{port}")


def test_fetch_caps_redirects(port: int, ca: ssl.SSLContext, seen: Seen) -> None:
    """A redirect loop stops after max_redirects hops."""
    with pytest.raises(UnsafeURLError) as info:
        _get(f"https://service.test:{port}/loop", ca, max_redirects=2)
    assert info.value.reason == "too_many_redirects"
    assert len(seen.requests) == 3


def test_fetch_with_zero_redirects_refuses_any_redirect(port: int, ca: ssl.SSLContext) -> None:
    """max_redirects=0 means a redirect is not followed."""
    with pytest.raises(UnsafeURLError):
        _get(f"https://service.test:{port}/relative", ca, max_redirects=0)


# --- body limits, encodings, status -----------------------------------------------------


def test_fetch_stops_streaming_at_max_bytes(port: int, ca: ssl.SSLContext) -> None:
    """A body without Content-Length is cut off once it passes max_bytes."""
    with pytest.raises(InputRejectedError) as info:
        _get(f"https://service.test:{port}/big", ca, max_bytes=10_000)
    assert info.value.reason == "too_large"


def test_fetch_refuses_declared_oversize_body_early(port: int, ca: ssl.SSLContext) -> None:
    """A Content-Length above max_bytes is refused before reading the body."""
    with pytest.raises(InputRejectedError) as info:
        _get(f"https://service.test:{port}/big-declared", ca, max_bytes=BIG - 1)
    assert info.value.reason == "too_large"


def test_fetch_accepts_body_of_exactly_max_bytes(port: int, ca: ssl.SSLContext) -> None:
    """The cap is inclusive."""
    assert len(_get(f"https://service.test:{port}/big", ca, max_bytes=BIG).content) == BIG


def test_fetch_refuses_compressed_body(port: int, ca: ssl.SSLContext) -> None:
    """A Content-Encoding other than identity is refused (no decompression bombs)."""
    with pytest.raises(InputRejectedError) as info:
        _get(f"https://service.test:{port}/gzip", ca)
    assert info.value.reason == "bad_encoding"


def test_fetch_raises_for_error_status(port: int, ca: ssl.SSLContext) -> None:
    """A non-2xx final response is an httpx.HTTPStatusError."""
    with pytest.raises(httpx.HTTPStatusError):
        _get(f"https://service.test:{port}/missing", ca)


# --- deadline ---------------------------------------------------------------------------


def test_fetch_enforces_overall_deadline_while_reading(port: int, ca: ssl.SSLContext) -> None:
    """Once the clock passes start + timeout during the body, the fetch times out."""
    ticks = iter([0.0, 1.0, 100.0])
    with pytest.raises(httpx.ReadTimeout, match="deadline"):
        _get(f"https://service.test:{port}/hello", ca, timeout=10, clock=lambda: next(ticks))


def test_fetch_enforces_overall_deadline_between_hops(
    port: int, ca: ssl.SSLContext, seen: Seen
) -> None:
    """A redirect hop starting after the deadline is not made."""
    ticks = iter([0.0, 1.0, 100.0])
    with pytest.raises(httpx.TimeoutException, match="deadline"):
        _get(f"https://service.test:{port}/relative", ca, timeout=10, clock=lambda: next(ticks))
    assert seen.requests == [("/relative", f"service.test:{port}")]


# --- configuration ----------------------------------------------------------------------


def test_fetch_refuses_disabled_verification() -> None:
    """verify=False is impossible."""
    with pytest.raises(ConfigError):
        fetch("https://service.test/", max_bytes=1, verify=False)


def test_fetch_refuses_context_without_hostname_check() -> None:
    """An SSLContext that skips certificate or hostname checks is refused."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with pytest.raises(ConfigError):
        fetch("https://service.test/", max_bytes=1, verify=context)
