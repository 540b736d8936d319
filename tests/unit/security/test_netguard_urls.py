"""Tests for security.netguard's ``check_url``: the outbound URL check (SSRF guard).

What it normalises, and the URLs it refuses: schemes, credentials, characters, hosts, ports
and internal IP literals.
"""

from __future__ import annotations

from ipaddress import ip_address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from security.netguard import check_url
from tests.support.outbound import LOOPBACK, reason_of

# --- check_url --------------------------------------------------------------------------


def test_check_url_normalises_scheme_and_host() -> None:
    """Scheme and host are lowercased; the default port is filled in; the rest is kept."""
    checked = check_url("HTTPS://Example.COM/Path?Q=1#Frag")
    assert checked.url == "https://example.com/Path?Q=1#Frag"
    assert (checked.scheme, checked.host, checked.port, checked.ip) == (
        "https",
        "example.com",
        443,
        None,
    )


def test_check_url_keeps_explicit_port() -> None:
    """An explicit port is kept in the URL and reported."""
    checked = check_url("https://example.com:8443/x")
    assert (checked.port, checked.url) == (8443, "https://example.com:8443/x")


def test_check_url_accepts_public_ip_literals() -> None:
    """Public IPv4 and bracketed IPv6 literals pass and report their address."""
    assert check_url("https://8.8.8.8/").ip == ip_address("8.8.8.8")
    checked = check_url("https://[2606:4700::1111]:8443/")
    assert checked.ip == ip_address("2606:4700::1111")
    assert checked.url == "https://[2606:4700::1111]:8443/"


def test_check_url_accepts_trailing_dot_and_percent_escapes() -> None:
    """A fully-qualified host with a trailing dot and %-escaped path are fine."""
    assert check_url("https://example.com./a%20b").host == "example.com."


def test_check_url_fragment_at_sign_is_not_credentials() -> None:
    """An '@' after '#' is part of the fragment, not userinfo; the host stays the real one."""
    assert check_url("https://example.com#@127.0.0.1").host == "example.com"


def test_check_url_allows_http_only_when_listed() -> None:
    """http:// is refused by default and accepted when the caller lists it."""
    assert reason_of(lambda: check_url("http://example.com/")) == "scheme_not_allowed"
    assert check_url("http://example.com/", schemes=("https", "http")).port == 80


@pytest.mark.parametrize(
    "url", ["ftp://example.com/", "file:///etc/passwd", "gopher://x.com/", "example.com/x"]
)
def test_check_url_refuses_other_schemes(url: str) -> None:
    """Only http(s) can ever pass, even if a caller lists another scheme."""
    assert reason_of(lambda: check_url(url, schemes=("https", "ftp", "file"))) == (
        "scheme_not_allowed"
    )


@pytest.mark.parametrize(
    "url", ["https://user@example.com/", "https://user:pw@example.com/", "https://@example.com/"]
)
def test_check_url_refuses_credentials(url: str) -> None:
    """Userinfo in the authority is refused."""
    assert reason_of(lambda: check_url(url)) == "credentials"


def test_check_url_refuses_overlong_url() -> None:
    """More than 2048 characters is refused."""
    assert reason_of(lambda: check_url("https://example.com/" + "a" * 2040)) == "too_long"


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/\x00",
        "https://example.com/a\r\nHost: evil",
        "https://example.com/a b",
        "https://example.com\t/",
        "https://evil.com\\@example.com/",
        "https://exämple.com/",
        'https://example.com/"x"',
        "https://example.com/%zz",
        "https://example.com/%4",
    ],
)
def test_check_url_refuses_characters_outside_rfc3986(url: str) -> None:
    """Controls, whitespace, backslash, non-ASCII, quotes and bad %-escapes are refused."""
    assert reason_of(lambda: check_url(url)) == "bad_char"


def test_check_url_refuses_unparsable_url() -> None:
    """An unbalanced IPv6 bracket is refused as bad_url."""
    assert reason_of(lambda: check_url("https://[::1/")) == "bad_url"


@pytest.mark.parametrize("url", ["https://[127.0.0.1]/", "https://[zz::1]/"])
def test_check_url_refuses_bracketed_non_ipv6_host(url: str) -> None:
    """Brackets must hold an IPv6 address (urlsplit or our own host check refuses)."""
    assert reason_of(lambda: check_url(url)) in {"bad_url", "bad_host"}


@pytest.mark.parametrize("url", ["https:///path", "https://:443/", "https:"])
def test_check_url_refuses_missing_host(url: str) -> None:
    """A URL without a host is refused."""
    assert reason_of(lambda: check_url(url)) == "no_host"


@pytest.mark.parametrize(
    "url",
    [
        "https://127.1/",
        "https://0x7f000001/",
        "https://2130706433/",
        "https://0177.0.0.1/",
        "https://example.0x1f/",
        "https://a..b/",
        "https://-a.com/",
        "https://a-.com/",
        "https://a%2ecom/",
        "https://[fe80::1%25eth0]/",
        "https://" + "a" * 64 + ".com/",
        "https://" + ".".join(["a" * 60] * 5) + "/",
    ],
)
def test_check_url_refuses_bad_hosts(url: str) -> None:
    """Numeric shorthands, malformed labels, bracketed IPv4 and zone ids are refused."""
    assert reason_of(lambda: check_url(url)) == "bad_host"


@pytest.mark.parametrize(
    "url", ["https://example.com:0/", "https://example.com:99999/", "https://example.com:x/"]
)
def test_check_url_refuses_bad_ports(url: str) -> None:
    """Port 0, out-of-range and non-numeric ports are refused."""
    assert reason_of(lambda: check_url(url)) == "bad_port"


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/",
        "https://10.0.0.1/",
        "https://169.254.169.254/latest/meta-data/",
        "https://0.0.0.0/",
        "https://[::1]/",
        "https://[::ffff:127.0.0.1]/",
        "https://[fd00:ec2::254]/",
    ],
)
def test_check_url_refuses_non_public_ip_literals(url: str) -> None:
    """A non-public IP literal is refused without any DNS."""
    assert reason_of(lambda: check_url(url)) == "non_public_address"


def test_check_url_allow_list_admits_ip_literal() -> None:
    """An IP literal inside ``allow`` passes."""
    assert check_url("https://127.0.0.1:8443/", allow=LOOPBACK).port == 8443


def test_check_url_does_not_resolve_hostnames() -> None:
    """A hostname passes syntax checks even if it would resolve internally (no DNS here)."""
    assert check_url("https://localhost.test/").ip is None


_URL_PATHS = st.text(alphabet="abcXYZ019-._~/?=&%20", max_size=40).filter(
    lambda s: "%" not in s.replace("%20", "")
)


@given(
    host=st.sampled_from(["Example.COM", "a.b.c", "[2606:4700::1111]", "8.8.8.8"]), path=_URL_PATHS
)
def test_check_url_normalisation_is_idempotent(host: str, path: str) -> None:
    """Checking a checked URL returns the same URL."""
    once = check_url(f"HTTPS://{host}/{path}").url
    assert check_url(once).url == once
